/// <reference lib="dom" />
// Functions passed to page.evaluate run in the browser: the DOM types are for them.
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { startTestServer, type TestServer } from "../support/claiim";
import { seedConsole, type Seeded } from "../support/console-seed";
import {
  check,
  closeChecked,
  freePort,
  go,
  launchChromium,
  oidcEnv,
  openPage,
  region,
  seriousViolations,
  signIn,
  startOidcProvider,
  until,
  type Watched,
} from "../support/browser";
import { asDatabaseOwner, sql } from "../support/sql";
import { claiimVerify } from "../support/verify-cli";

// The console in a real browser (Debian's Chromium, driven by playwright-core) against a real
// CLAIIM on SQLite with seeded data. The console is the built one, from dist/console (make setup).
// The API it reads is tested on both databases by the e2e tests; here the browser is what is new.

jest.setTimeout(120_000);

describe("the console in Chromium", () => {
  let s: TestServer;
  let seeded: Seeded;
  let browser: Browser;
  const open: Watched[] = [];

  const watch = async (origin = s.claiim.url) => {
    const w = await openPage(browser, origin);
    open.push(w);
    return w;
  };
  const cell = (page: Page, seq: number) => page.locator(`tr[data-seq="${seq}"]`);

  beforeAll(async () => {
    s = await startTestServer("sqlite", { env: { CLAIIM_CHECKPOINT_EVERY_RECORDS: "20", CLAIIM_CHECKPOINT_EVERY_SECONDS: "3600" } });
    seeded = await seedConsole(s.claiim.url, s.admin);
    browser = await launchChromium();
  });
  afterEach(() => closeChecked(open));
  afterAll(async () => {
    await browser?.close();
    await s?.stop();
  });

  test("sign in with a key kept in memory only: the dashboard shows the seeded counts, as charts and tables", async () => {
    const w = await watch();
    await w.page.goto(`${s.claiim.url}/console/`);
    await check(w.page, "01-sign-in");
    await signIn(w, s.admin);
    // Three outcomes, each counted apart: an approval required is neither an allow nor a deny.
    await expect(w.page.getByTestId("total-allows").textContent()).resolves.toBe(String(seeded.totals.allow));
    await expect(w.page.getByTestId("total-denies").textContent()).resolves.toBe(String(seeded.totals.deny));
    await expect(w.page.getByTestId("total-approval-required").textContent()).resolves.toBe(String(seeded.totals.approval_required));
    await expect(w.page.getByTestId("total-decisions").textContent()).resolves.toBe(String(seeded.totals.allow + seeded.totals.deny + seeded.totals.approval_required));
    // The approvals those decisions asked for: one per distinct request, none answered yet.
    await expect(w.page.getByTestId("approvals-requested").textContent()).resolves.toBe(String(seeded.approvalsRequested.total));
    await expect(w.page.getByTestId("approvals-approved").textContent()).resolves.toBe("0");
    // Each breakdown is drawn, and its numbers are in a table too.
    for (const figure of ["Per day (UTC)", "Decisions by agent", "Decisions by accountable human", "Decisions by action", "Decisions by policy version"]) {
      await w.page.getByRole("figure", { name: figure }).locator(".recharts-bar-rectangle").first().waitFor();
    }
    const byAgent = w.page.getByRole("figure", { name: "Decisions by agent" });
    await byAgent.getByText("Table").click();
    const deployRow = byAgent.getByRole("row", { name: /deploy-bot/ });
    const deploy = seeded.agents["deploy-bot"];
    await expect(deployRow.getByRole("cell").allTextContents()).resolves.toEqual([String(deploy.allows), String(deploy.approvals), String(deploy.denies)]);
    // The latest denials, newest first, with their reasons and reason codes; approvals required are not denials.
    const denials = (await region(w.page, "Latest denials")).locator("tbody tr");
    await expect(denials.count()).resolves.toBe(10);
    await expect(denials.first().textContent()).resolves.toMatch(/review-bot.*merge_pull_request.*deny.*forbidden_by_skill merging requires approval by a human reviewer/);
    for (const text of await denials.allTextContents()) expect(text).not.toMatch(/approval required/);
    await byAgent.getByText("Table").click();
    await check(w.page, "02-dashboard");
    // The same counts over the last 7 days (all of them are today's).
    await w.page.getByLabel("Window").selectOption("7");
    await until(async () => (await w.page.getByRole("figure", { name: "Per day (UTC)" }).locator("tbody tr").count()) === 7);
    await expect(w.page.getByTestId("total-allows").textContent()).resolves.toBe(String(seeded.totals.allow));
    await check(w.page, "02-dashboard-7-days", "docs/images/console-dashboard.png");
    // The accessibility check finds what it should: an unlabelled field and a button without a name.
    await w.page.evaluate(() => document.querySelector("main")!.insertAdjacentHTML("beforeend", '<div id="broken"><input type="text"><button></button></div>'));
    expect(await seriousViolations(w.page)).toEqual([expect.stringMatching(/^button-name \(critical\)/), expect.stringMatching(/^label \(critical\)/)]);
    await w.page.evaluate(() => document.getElementById("broken")!.remove());

    // The key is nowhere but in memory: no storage, no cookie, not in the page; a reload signs out.
    expect(await w.page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie])).toEqual([0, 0, ""]);
    expect(await w.page.content()).not.toContain(s.admin);
    await w.page.reload();
    await w.page.getByRole("textbox", { name: "API key" }).waitFor();
  });

  test("a wrong key is refused with the API's reason", async () => {
    const w = await watch();
    await w.page.goto(`${s.claiim.url}/console/`);
    await w.page.getByRole("textbox", { name: "API key" }).fill("claiim_nope_nope");
    await w.page.getByRole("button", { name: "Sign in", exact: true }).click();
    await expect(w.page.getByRole("alert").textContent()).resolves.toMatch(/api_key_invalid/);
  });

  test("the explorer: filter to one agent's denials, open one, see its proof; export it, and claiim-verify accepts the file", async () => {
    const w = await watch();
    await signIn(w, seeded.keys.auditor);
    await w.page.getByRole("link", { name: "Chron explorer" }).click();
    await w.page.locator('[data-testid=verify-banner][data-state="valid"]').waitFor();
    // With the keyboard only: type part of the name, arrow down to the match, Enter to pick, Enter to apply.
    await w.page.getByLabel("Decision", { exact: true }).selectOption("deny");
    const agent = w.page.getByRole("combobox", { name: "Agent" });
    await agent.pressSequentially("deploy");
    await w.page.getByRole("option", { name: /deploy-bot/ }).waitFor();
    await agent.press("ArrowDown");
    await expect(w.page.getByRole("option", { name: /deploy-bot/ }).getAttribute("aria-selected")).resolves.toBe("true");
    await agent.press("Enter");
    await expect(agent.inputValue()).resolves.toBe("deploy-bot");
    await agent.press("Enter");
    await w.page.waitForURL(/decision=deny/);
    const rows = (await region(w.page, "Records")).locator("tbody tr");
    await expect(rows.count()).resolves.toBe(seeded.agents["deploy-bot"].denies);
    for (const text of await rows.allTextContents()) expect(text).toMatch(/deploy-bot.*alice@acme\.example.*rollback.*production.*deny.*no_rule_permits no rule permits/);
    expect(w.page.url()).toContain(`agent=${seeded.agents["deploy-bot"].id}`);
    await check(w.page, "03-explorer", "docs/images/console-explorer.png");

    // Export what the filters select; the console names the file and the exact command.
    const [download] = await Promise.all([w.page.waitForEvent("download"), w.page.getByRole("button", { name: "Export NDJSON" }).click()]);
    const file = path.join(w.downloads, download.suggestedFilename());
    await download.saveAs(file);
    const command = await w.page.getByLabel("Verification command").textContent();
    expect(command).toBe(`curl -s ${s.claiim.url}/.well-known/jwks.json -o jwks.json\nnpx claiim-verify ${download.suggestedFilename()} --jwks jwks.json`);
    const jwks = path.join(w.downloads, "jwks.json");
    fs.writeFileSync(jwks, await (await fetch(`${s.claiim.url}/.well-known/jwks.json`)).text());
    const verified = await claiimVerify(file, jwks);
    expect(verified).toMatchObject({ code: 0, out: expect.stringMatching(/^OK/) });
    const lines = fs.readFileSync(file, "utf8").trim().split("\n");
    expect(lines.length).toBe(seeded.agents["deploy-bot"].denies + 2);
    const [csv] = await Promise.all([w.page.waitForEvent("download"), w.page.getByRole("button", { name: "Export CSV" }).click()]);
    expect(csv.suggestedFilename()).toMatch(/\.csv$/);
    const csvFile = path.join(w.downloads, csv.suggestedFilename());
    await csv.saveAs(csvFile);
    expect(await claiimVerify(csvFile, jwks)).toMatchObject({ code: 0, out: expect.stringMatching(/^OK/) });
    await check(w.page, "04-explorer-export");

    // Open the newest denial: its fields, its hash recomputed in the browser, the link to its predecessor.
    const newest = Number((await rows.first().getAttribute("data-seq"))!);
    await rows.first().getByRole("link", { name: `#${newest}` }).click();
    await w.page.getByRole("heading", { name: `Record #${newest}` }).waitFor();
    await expect(w.page.getByTestId("hash-check").textContent()).resolves.toBe("matches");
    await w.page.getByText("link intact").waitFor();
    await expect(w.page.getByRole("region", { name: "Decision" }).textContent()).resolves.toMatch(/no_rule_permits no rule permits action "rollback" on resource "production" under skill "deploy"/);
    await w.page.getByRole("link", { name: `Record #${newest - 1}` }).click();
    await w.page.getByRole("heading", { name: `Record #${newest - 1}` }).waitFor();
    await check(w.page, "05-record");

    // Approval required is an outcome of its own, with its filter, its badge and its reason code.
    await go(w.page, `/chron?agent=${seeded.agents["deploy-bot"].id}&decision=approval_required&order=desc`);
    const waiting = (await region(w.page, "Records")).locator("tbody tr");
    await expect(waiting.count()).resolves.toBe(seeded.agents["deploy-bot"].approvals);
    for (const text of await waiting.allTextContents()) {
      expect(text).toMatch(/deploy-bot.*deploy.*production.*approval required.*approval_required deploying to production requires a change approved by a human/);
    }
    await expect(w.page.getByLabel("Decision", { exact: true }).inputValue()).resolves.toBe("approval_required");
    await waiting.first().getByRole("link").first().click();
    // Every ask of the same request names the one approval it waits for.
    const approval = w.page.getByRole("region", { name: "Decision" }).getByRole("link", { name: /^[0-9a-f-]{36}$/ });
    const approvalId = await approval.textContent();
    expect(await approval.getAttribute("href")).toBe(`/console/approvals/${approvalId}`);
    await expect(w.page.getByRole("region", { name: "Decision" }).textContent()).resolves.toMatch(/Approval.*pending/);
    await check(w.page, "05-record-approval-required");
  });

  test("after a record is tampered with in the database, the verification banner turns red and names it", async () => {
    const w = await watch();
    await signIn(w, seeded.keys.auditor);
    await w.page.getByRole("link", { name: "Chron explorer" }).click();
    await w.page.locator('[data-testid=verify-banner][data-state="valid"]').waitFor();
    const [victim] = await sql(s.claiim.db, "SELECT seq FROM chron_records WHERE agent_id = $1 AND decision = 'deny' ORDER BY seq LIMIT 1", [seeded.agents["deploy-bot"].id]);
    const seq = Number(victim.seq);
    // An administrator turns a deny into an allow, in place.
    await asDatabaseOwner(s.claiim.db, () => sql(s.claiim.db, `UPDATE chron_records SET content = replace(content, '"decision":"deny"', '"decision":"allow"') WHERE seq = $1`, [seq]));
    await w.page.getByRole("button", { name: "Verify again" }).click();
    const banner = w.page.locator('[data-testid=verify-banner][data-state="invalid"]');
    await banner.waitFor();
    await expect(banner.textContent()).resolves.toContain(`Chain broken at record #${seq}: hash mismatch`);
    await expect(banner.evaluate((el) => getComputedStyle(el).backgroundColor)).resolves.toBe("rgb(255, 235, 233)");
    await go(w.page, `/chron?agent=${seeded.agents["deploy-bot"].id}&order=asc`);
    await region(w.page, "Records");
    await cell(w.page, seq).getByText("first bad record").waitFor();
    await expect(w.page.getByText("first bad record").count()).resolves.toBe(1);
    await check(w.page, "06-explorer-tampered");
    await banner.getByRole("link", { name: `Open record #${seq}` }).click();
    await w.page.getByText("This is the first bad record").waitFor();
    await expect(w.page.getByTestId("hash-check").textContent()).resolves.toMatch(/^does not match/);
    await check(w.page, "07-record-tampered");
    await asDatabaseOwner(s.claiim.db, () => sql(s.claiim.db, `UPDATE chron_records SET content = replace(content, '"decision":"allow"', '"decision":"deny"') WHERE seq = $1`, [seq]));
    expect((await s.http.get("/v1/chron/verify").set({ Authorization: `Bearer ${s.admin}` }).expect(200)).body.valid).toBe(true);
  });

  test("agents: the inventory pages on the server; an agent's permissions and decisions; a manager suspends and reactivates", async () => {
    const w = await watch();
    await signIn(w, seeded.keys.manager);
    // An agent manager sees Agents and the approvals their agents wait for, and not Chron or policies.
    await expect(w.page.getByRole("navigation", { name: "Console" }).getByRole("link").allTextContents()).resolves.toEqual(["Agents", "Approvals"]);
    const rows = (await region(w.page, "Inventory")).locator("tbody tr");
    await expect(rows.allTextContents()).resolves.toEqual([
      expect.stringMatching(/^deploy-bot.*acme.*active.*Alice Ops.*deploy@1\.2\.0/),
      expect.stringMatching(/^finance-bot.*acme.*Bob Finance.*finance-reporting@1\.0\.0/),
      expect.stringMatching(/^review-bot.*globex/),
      expect.stringMatching(/^support-bot.*globex.*customer-support@2\.1\.0/),
    ]);
    await w.page.getByRole("searchbox", { name: "Name contains" }).fill("support");
    await w.page.waitForFunction(() => document.querySelectorAll("main tbody tr").length === 1);
    await check(w.page, "08-agents");
    await w.page.getByRole("searchbox", { name: "Name contains" }).fill("");
    await w.page.getByRole("link", { name: "deploy-bot" }).click();
    const matrix = (await region(w.page, "Effective permissions")).locator("tbody tr");
    await expect(matrix.allTextContents()).resolves.toEqual([
      expect.stringMatching(/deploy.*staging.*allow/),
      expect.stringMatching(/deploy.*staging\/\*.*allow/),
      expect.stringMatching(/deploy.*production.*approval required.*approval_required deploying to production requires a change approved by a human/),
      expect.stringMatching(/deploy.*production\/\*.*approval required/),
    ]);
    await w.page.getByText("Reading Chron needs the auditor role.").waitFor();
    await w.page.getByRole("textbox", { name: "Reason" }).fill("incident 42: unexpected deploys");
    await w.page.getByRole("button", { name: "Suspend agent" }).click();
    await w.page.getByText("deploy-bot is now suspended.").waitFor();
    // The page reads the agent again after the answer: the heading follows a moment later.
    await w.page.getByRole("heading", { level: 1, name: "deploy-bot suspended", exact: true }).waitFor();
    await expect(w.page.getByRole("heading", { level: 1 }).textContent()).resolves.toBe("deploy-bot suspended");
    await check(w.page, "09-agent-suspended");
    const events = (await s.http.get(`/v1/chron/records?agent=${seeded.agents["deploy-bot"].id}&action=agent.suspended`).set({ Authorization: `Bearer ${s.admin}` }).expect(200)).body.records;
    expect(events).toEqual([expect.objectContaining({ type: "agent.suspended", reason: "incident 42: unexpected deploys", actor: expect.objectContaining({ name: "agent inventory" }) })]);
    await w.page.getByRole("textbox", { name: "Reason" }).fill("incident 42 closed");
    await w.page.getByRole("button", { name: "Reactivate agent" }).click();
    await w.page.getByText("deploy-bot is now active.").waitFor();
  });

  test("an auditor sees an agent with its decisions but no suspend button", async () => {
    const w = await watch();
    await signIn(w, seeded.keys.auditor);
    await go(w.page, `/agents/${seeded.agents["finance-bot"].id}`);
    await w.page.getByRole("heading", { name: /^finance-bot/ }).waitFor();
    const decisions = (await region(w.page, "Recent decisions")).locator("tbody tr");
    await expect(decisions.count()).resolves.toBe(seeded.agents["finance-bot"].allows + seeded.agents["finance-bot"].denies);
    await region(w.page, "Effective permissions");
    await expect(w.page.getByRole("button", { name: /Suspend|Reactivate/ }).count()).resolves.toBe(0);
    await expect(w.page.getByRole("region", { name: "Lifecycle" }).count()).resolves.toBe(0);
    await check(w.page, "10-agent-as-auditor");
  });

  test("a key revoked while signed in ends the session at the next call, and says why", async () => {
    const { id, secret } = (await s.http.post("/v1/api-keys").set({ Authorization: `Bearer ${s.admin}` }).send({ name: "short-lived", role: "auditor" }).expect(201)).body;
    const w = await watch();
    await signIn(w, secret);
    // The landing page's own reads must be answered first: on a loaded machine one of them could
    // otherwise be the next call, end the session before the click, and take the link away.
    await w.page.waitForLoadState("networkidle");
    await s.http.delete(`/v1/api-keys/${id}`).set({ Authorization: `Bearer ${s.admin}` }).expect(200);
    await w.page.getByRole("link", { name: "Agents" }).click();
    await w.page.getByRole("textbox", { name: "API key" }).waitFor();
    await expect(w.page.getByRole("status").first().textContent()).resolves.toMatch(/Signed out: .*api_key_revoked/);
  });

  test("text from the trail is shown as text: markup in a reason neither runs nor loads anything", async () => {
    const agent = seeded.agents["review-bot"].id;
    const markup = '<img src="https://attacker.example/x.png" onerror="window.__pwned = 1"><script>window.__pwned = 2</script>';
    const as = { Authorization: `Bearer ${s.admin}` };
    await s.http.post(`/v1/agents/${agent}/suspend`).set(as).send({ reason: markup }).expect(200);
    try {
      const w = await watch();
      await signIn(w, seeded.keys.auditor);
      await go(w.page, `/agents/${agent}`);
      await w.page.getByText(markup).first().waitFor();
      await go(w.page, `/chron?agent=${agent}&action=agent.suspended`);
      await (await region(w.page, "Records")).getByText(markup).waitFor();
      expect(await w.page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
      await expect(w.page.locator("main img").count()).resolves.toBe(0);
    } finally {
      await s.http.post(`/v1/agents/${agent}/reactivate`).set(as).send({ reason: "test over" }).expect(200);
    }
  });

  test("a key confined to one organisation sees only that organisation, everywhere", async () => {
    const w = await watch();
    await signIn(w, seeded.keys.globexAuditor);
    await expect(w.page.locator("header .who").textContent()).resolves.toContain("organisation globex");
    await expect(w.page.getByTestId("total-allows").textContent()).resolves.toBe(String(seeded.byOrg.globex.allow));
    await expect(w.page.getByTestId("total-denies").textContent()).resolves.toBe(String(seeded.byOrg.globex.deny));
    await expect(w.page.getByTestId("total-approval-required").textContent()).resolves.toBe(String(seeded.byOrg.globex.approval_required));
    await expect(w.page.getByTestId("approvals-requested").textContent()).resolves.toBe(String(seeded.approvalsRequested.byOrg.globex));
    await check(w.page, "11-dashboard-globex");
    await w.page.getByRole("link", { name: "Chron explorer" }).click();
    const orgCells = (await region(w.page, "Records")).locator("tbody tr td:nth-child(3)");
    expect(new Set(await orgCells.allTextContents())).toEqual(new Set(["globex"]));
    await expect(w.page.getByLabel("Organisation").locator("option").allTextContents()).resolves.toEqual(["all", "Globex (globex)"]);
    await w.page.getByRole("link", { name: "Agents" }).click();
    await expect((await region(w.page, "Inventory")).locator("tbody tr td:first-child").allTextContents()).resolves.toEqual(["review-bot", "support-bot"]);
    // Another organisation's agent, by its address: the API says it does not exist.
    await go(w.page, `/agents/${seeded.agents["deploy-bot"].id}`);
    await expect(w.page.getByRole("alert").textContent()).resolves.toMatch(/agent_not_found/);
    // Another organisation's record, by its number: not shown.
    const [acme] = await sql(s.claiim.db, "SELECT seq FROM chron_records WHERE agent_id = $1 LIMIT 1", [seeded.agents["deploy-bot"].id]);
    await go(w.page, `/chron/records/${acme.seq}`);
    await w.page.getByText(`No record #${acme.seq} that you may see`).waitFor();
    await check(w.page, "12-record-other-organisation");
  });

  test("policies: versions with who published and activated them, a diff, the shadow and its report, replay results", async () => {
    const w = await watch();
    await signIn(w, s.admin);
    await w.page.getByRole("link", { name: "Policies" }).click();
    await expect(w.page.getByTestId("active-version").textContent()).resolves.toMatch(/^version 1/);
    await expect(w.page.getByTestId("shadow-version").textContent()).resolves.toMatch(/^version 2 since/);
    const versions = (await region(w.page, "Versions")).locator("tbody tr");
    const column = async (row: number, n: number) => (await versions.nth(row).locator(`td:nth-child(${n})`).textContent())!;
    await expect(versions.count()).resolves.toBe(2);
    expect([await column(0, 1), await column(0, 3), await column(0, 4), await column(0, 5), await column(0, 6)]).toEqual([
      expect.stringMatching(/^2 /),
      "support drafts go through the review queue",
      expect.stringMatching(/^bootstrap administrator, 20/),
      "never",
      "shadow",
    ]);
    expect([await column(1, 1), await column(1, 4), await column(1, 5), await column(1, 6)]).toEqual([
      expect.stringMatching(/^1 /),
      expect.stringMatching(/^reference policies on first start, 20/),
      expect.stringMatching(/^reference policies on first start, 20/),
      "active",
    ]);
    await w.page.getByRole("button", { name: "Show the diff" }).click();
    const diff = w.page.getByTestId("policy-diff");
    await expect(diff.textContent()).resolves.toMatch(/From version 1 to 2: 0 added, 1 removed, 1 changed/);
    await expect(diff.locator(".del").allTextContents()).resolves.toEqual([expect.stringContaining('"resources": ["ticket/*"]')]);
    await expect(diff.locator(".add").allTextContents()).resolves.toEqual([expect.stringContaining('"resources": ["ticket/internal/*"]')]);
    const decided = seeded.totals.allow + seeded.totals.deny + seeded.totals.approval_required;
    await expect(w.page.getByTestId("shadow-report").textContent()).resolves.toMatch(
      new RegExp(`${decided} decisions evaluated, ${seeded.agents["support-bot"].allows} disagreements \\(${seeded.agents["support-bot"].allows} allow→deny, 0 deny→allow, 0 between deny and approval required\\)`),
    );
    const replay = (await region(w.page, "Replays")).getByTestId("replays").locator("tbody tr").first();
    await expect(replay.locator("td").allTextContents()).resolves.toEqual([
      "2",
      expect.any(String),
      expect.any(String),
      "done",
      String(decided - seeded.agents["support-bot"].allows),
      String(seeded.agents["support-bot"].allows),
      "0",
      "0",
      `Show ${seeded.agents["support-bot"].allows}`,
    ]);
    await replay.getByRole("button", { name: /Show/ }).click();
    await expect(w.page.getByRole("table", { name: /Decisions that version 2 would change/ }).locator("tbody tr").count()).resolves.toBe(seeded.agents["support-bot"].allows);
    await check(w.page, "13-policies");
  });

  describe("with the organisation's identity provider (a real OIDC provider on loopback)", () => {
    let idp: ChildProcess;
    let oidc: TestServer;

    beforeAll(async () => {
      const port = await freePort();
      const issuer = `http://127.0.0.1:${port}`;
      oidc = await startTestServer("sqlite", { env: oidcEnv(issuer) });
      await oidc.http.post("/v1/organizations").set({ Authorization: `Bearer ${oidc.admin}` }).send({ slug: "acme", name: "Acme" }).expect(201);
      idp = await startOidcProvider(port, `${oidc.claiim.url}/console/callback`, "urn:claiim:api");
    });
    afterAll(async () => {
      idp?.kill();
      await oidc?.stop();
    });

    test("authorization code with PKCE: the provider's sign-in, back to the page asked for, with the role and organisation of its token", async () => {
      const config = (await (await fetch(`${oidc.claiim.url}/console/config.json`)).json()) as { oidc: unknown };
      expect(config.oidc).toMatchObject({ client_id: "claiim-console", token_endpoint: `${oidc.config.oidc!.issuer}/token`, resource: "urn:claiim:api" });
      const page = await fetch(`${oidc.claiim.url}/console/`);
      expect(page.headers.get("content-security-policy")).toContain(`connect-src 'self' ${oidc.config.oidc!.issuer};`);

      const w = await watch(oidc.claiim.url);
      await w.page.goto(`${oidc.claiim.url}/console/agents`);
      await check(w.page, "14-sign-in-oidc");
      await w.page.getByRole("button", { name: /^Sign in with 127\.0\.0\.1/ }).click();
      await w.page.waitForURL(`${oidc.config.oidc!.issuer}/**`);
      // The PKCE verifier waits in sessionStorage only for the round trip (see console/src/oidc.ts).
      await w.page.locator("input[name=login]").fill("alice");
      await w.page.locator("input[name=password]").fill("anything");
      await w.page.locator("button[type=submit]").click();
      await w.page.waitForURL(`${oidc.claiim.url}/console/agents`);
      await expect(w.page.locator("header .who").textContent()).resolves.toMatch(/Alice Auditor · auditor · organisation acme/);
      await w.page.getByRole("region", { name: "Inventory" }).waitFor();
      expect(await w.page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie])).toEqual([0, 0, ""]);
      expect(w.page.url()).not.toContain("code=");
      await check(w.page, "15-signed-in-with-oidc");
      // The provider was reached, and nothing else outside CLAIIM.
      const outside = w.requests.filter((u) => !u.startsWith(`${oidc.claiim.url}/`) && !u.startsWith("blob:") && !u.startsWith("data:"));
      expect(outside.length).toBeGreaterThan(0);
      expect(outside.every((u) => u.startsWith(`${oidc.config.oidc!.issuer}/`))).toBe(true);
      w.requests.length = 0;
    });

    test("a callback nobody started in this tab is refused", async () => {
      const w = await watch(oidc.claiim.url);
      await w.page.goto(`${oidc.claiim.url}/console/callback?code=stolen&state=guessed&iss=${encodeURIComponent(oidc.config.oidc!.issuer)}`);
      await expect(w.page.getByRole("alert").textContent()).resolves.toMatch(/no sign-in was started in this tab/);
      expect(w.page.url()).toBe(`${oidc.claiim.url}/console/callback`);
    });
  });
});
