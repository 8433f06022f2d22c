/// <reference lib="dom" />
// Functions passed to page.evaluate run in the browser: the DOM types are for them.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from "playwright-core";

const ROOT = path.resolve(__dirname, "../..");
/** Screenshots of every page the browser tests visit (gitignored; CI keeps them as artefacts). */
export const ARTEFACTS = path.join(ROOT, "test-artifacts/console");
/** Debian's Chromium (scripts/ensure-debian-package.sh installs it); CLAIIM_TEST_CHROMIUM names another. */
export const CHROMIUM = process.env.CLAIIM_TEST_CHROMIUM ?? "/usr/bin/chromium";

/**
 * Headless Chromium as this machine runs it: no sandbox (root), and none of Chromium's own
 * traffic (updates, safe browsing, sync), which a closed network refuses.
 */
export async function launchChromium(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: run the tests with make test (scripts/ensure-debian-package.sh installs Debian's chromium), or set CLAIIM_TEST_CHROMIUM`);
  fs.mkdirSync(ARTEFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
}

/** A page, and what it did that a test should look at: its requests, CSP violations, errors. */
export interface Watched {
  origin: string;
  context: BrowserContext;
  page: Page;
  /** Every request made while the page showed `origin` (CLAIIM): the console's own, not an identity provider's pages'. */
  requests: string[];
  problems: string[];
  downloads: string;
}

export async function openPage(browser: Browser, origin: string): Promise<Watched> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, acceptDownloads: true, locale: "en-GB", timezoneId: "UTC" });
  const page = await context.newPage();
  const requests: string[] = [];
  const problems: string[] = [];
  context.on("request", (r) => {
    let from = "";
    try {
      from = r.frame().url();
    } catch {
      // a service worker's request: none here
    }
    if (from === "about:blank" || from.startsWith(`${origin}/`)) requests.push(r.url());
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A failed API call is logged by Chromium as a failed resource: the tests expect some (404s, 401s).
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  // Runs before any of the page's scripts, and outside its CSP (DevTools protocol).
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e: SecurityPolicyViolationEvent) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
    });
  });
  return { origin, context, page, requests, problems, downloads: fs.mkdtempSync(path.join(os.tmpdir(), "claiim-downloads-")) };
}

/**
 * Closes what a test opened, and holds each page to the console's promises: nothing fetched from
 * anywhere but CLAIIM, no CSP violation, no script error. A test that went through an identity
 * provider checks its requests itself and empties them.
 */
export async function closeChecked(open: Watched[]): Promise<void> {
  for (const w of open.splice(0)) {
    const outside = w.requests.filter((u) => !u.startsWith(`${w.origin}/`) && !u.startsWith("blob:") && !u.startsWith("data:"));
    await w.context.close();
    expect(outside).toEqual([]);
    expect(w.problems).toEqual([]);
  }
}

/** Moves within the console as its own links do: no reload, so the in-memory session stays. */
export async function go(page: Page, consolePath: string): Promise<void> {
  await page.evaluate((p) => {
    history.pushState(null, "", p);
    dispatchEvent(new PopStateEvent("popstate"));
  }, `/console${consolePath}`);
}

export async function shot(page: Page, name: string, also?: string): Promise<void> {
  await page.evaluate(() => document.fonts.ready);
  const file = path.join(ARTEFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  // CLAIIM_UPDATE_README_SCREENSHOTS=1 refreshes the README's pictures (the visible part of the page).
  if (also && process.env.CLAIIM_UPDATE_README_SCREENSHOTS === "1") {
    await page.mouse.move(0, 0);
    await page.evaluate(() => {
      (document.activeElement as HTMLElement | null)?.blur();
      window.scrollTo(0, 0);
    });
    await page.screenshot({ path: path.join(ROOT, also) });
  }
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

const AXE_SOURCE = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** axe-core's WCAG 2.1 A/AA and best-practice rules on the page as it stands; the serious and critical violations. */
export async function seriousViolations(page: Page): Promise<string[]> {
  // Evaluated through the DevTools protocol: the console's CSP (rightly) refuses injected scripts.
  await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(ctx: Document, opts: unknown): Promise<{ violations: AxeViolation[] }> } }).axe;
    const result = await axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] }, resultTypes: ["violations"] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target })) }));
  });
  return violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

/** Signs in on the console's page with an API key, as a user pastes one, and waits until signed in. */
export async function signIn(w: Watched, key: string): Promise<void> {
  await w.page.goto(`${w.origin}/console/`);
  await w.page.getByRole("textbox", { name: "API key" }).fill(key);
  await w.page.getByRole("button", { name: "Sign in", exact: true }).click();
  await w.page.getByRole("button", { name: "Sign out" }).waitFor();
}

/** Every page is checked the same way: a screenshot, and no serious accessibility violation. */
export async function check(page: Page, name: string, readme?: string): Promise<void> {
  await shot(page, name, readme);
  expect(await seriousViolations(page)).toEqual([]);
}

/** A titled section of the page, once what it shows has loaded (aria-busy false). */
export async function region(page: Page, name: string): Promise<Locator> {
  const r = page.getByRole("region", { name, exact: true });
  await r.and(page.locator('[aria-busy="false"]')).waitFor();
  return r;
}

/** Waits (10 s at most) until `done` holds, for what the page shows after an answer comes. */
export async function until(done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error("the page did not get there in 10 s");
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A real OpenID Connect provider (test/support/oidc-provider.mjs) on loopback, once it listens. */
export async function startOidcProvider(port: number, redirectUri: string, resource: string): Promise<ChildProcess> {
  const idp = spawn(process.execPath, [path.join(__dirname, "oidc-provider.mjs"), String(port), redirectUri, resource], { stdio: ["ignore", "pipe", "pipe"] });
  await new Promise<void>((resolve, reject) => {
    idp.stdout!.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
    idp.once("exit", (code) => reject(new Error(`the OIDC provider exited (${code})`)));
  });
  return idp;
}

/** What CLAIIM needs to trust that provider, and to offer its sign-in in the console. */
export function oidcEnv(issuer: string): Record<string, string> {
  return {
    CLAIIM_OIDC_ISSUER: issuer,
    CLAIIM_OIDC_AUDIENCE: "urn:claiim:api",
    CLAIIM_OIDC_JWKS_URL: `${issuer}/jwks`,
    CLAIIM_CONSOLE_OIDC_CLIENT_ID: "claiim-console",
    CLAIIM_CONSOLE_OIDC_RESOURCE: "urn:claiim:api",
    CLAIIM_CONSOLE_OIDC_SCOPE: "openid profile email claiim",
  };
}

/**
 * Signs in through that provider's own pages (its dev interactions) as `login`, starting from
 * `consolePath` (where the provider sends the browser back), and waits until the console is at `landing`.
 */
export async function signInWithProvider(w: Watched, issuer: string, login: string, consolePath: string, landing: string | RegExp = `${w.origin}/console${consolePath}`): Promise<void> {
  await w.page.goto(`${w.origin}/console${consolePath}`);
  await w.page.getByRole("button", { name: /^Sign in with 127\.0\.0\.1/ }).click();
  await w.page.waitForURL(`${issuer}/**`);
  await w.page.locator("input[name=login]").fill(login);
  await w.page.locator("input[name=password]").fill("anything");
  await w.page.locator("button[type=submit]").click();
  await w.page.waitForURL(landing);
}
