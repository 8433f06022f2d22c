import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import request from "supertest";
import { consoleHandler, contentSecurityPolicy } from "../../src/console/console-handler";
import { consoleSettings } from "../../src/console/console-settings";
import { checkMetadata } from "../../src/console/oidc-discovery";
import { createApp } from "../../src/http/app";
import { createLogger } from "../../src/lib/logger";
import type { OidcSettings } from "../../src/identity/oidc";

// How CLAIIM serves the console's files: headers, the SPA fallback, what it refuses to serve, and
// how it learns the identity provider's endpoints. The built console itself is tested in a browser.

const logger = createLogger("silent");
const INDEX = '<!doctype html><html lang="en"><head><script type="module" src="/console/assets/app-1a2b.js"></script></head><body><div id="root"></div></body></html>';

function builtConsole(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "claiim-console-"));
  fs.mkdirSync(path.join(dir, "assets"));
  fs.writeFileSync(path.join(dir, "index.html"), INDEX);
  fs.writeFileSync(path.join(dir, "assets/app-1a2b.js"), "console.log('console');");
  fs.writeFileSync(path.join(dir, ".claiim-build"), "stamp");
  return dir;
}

function serve(dir: string, oidc: OidcSettings | null = null, clientId?: string) {
  const settings = consoleSettings({ CLAIIM_CONSOLE_DIR: dir, ...(clientId ? { CLAIIM_CONSOLE_OIDC_CLIENT_ID: clientId, CLAIIM_OIDC_ISSUER: oidc!.issuer } : {}) }, "/");
  return request(createApp([], { authenticate: () => Promise.reject(new Error("no routes")), defaultBodyLimit: 1024 }, logger, [consoleHandler(settings, oidc, logger)]));
}

const STRICT = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

describe("serving the console", () => {
  const dir = builtConsole();
  const app = serve(dir);

  test("/console/ is the page, with a strict CSP and no caching; /console redirects there", async () => {
    expect((await app.get("/console").expect(308)).headers.location).toBe("/console/");
    const res = await app.get("/console/").expect(200);
    expect(res.text).toBe(INDEX);
    expect(res.headers).toMatchObject({
      "content-security-policy": STRICT,
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      "x-frame-options": "DENY",
    });
    expect(contentSecurityPolicy([])).toBe(STRICT);
  });

  test("any path without a file extension is the page (the console routes in the browser)", async () => {
    for (const p of ["/console/chron", "/console/chron/records/12", "/console/agents/5b7c2a4e-1111-4111-8111-111111111111", "/console/callback?code=x&state=y"]) {
      const res = await app.get(p).expect(200);
      expect([p, res.text]).toEqual([p, INDEX]);
    }
  });

  test("hashed assets are cached for good; a missing asset is a 404 problem, never the page", async () => {
    const js = await app.get("/console/assets/app-1a2b.js").expect(200);
    expect(js.headers["cache-control"]).toBe("public, max-age=31536000, immutable");
    expect(js.headers["content-type"]).toMatch(/javascript/);
    const missing = await app.get("/console/assets/app-9z9z.js").expect(404);
    expect(missing.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(missing.body.code).toBe("route_not_found");
  });

  test("nothing outside the console's folder, and no dotfile, is served, however the path is spelled", async () => {
    fs.writeFileSync(path.join(path.dirname(dir), "secret.txt"), "top secret");
    for (const p of ["/console/../secret.txt", "/console/%2e%2e/secret.txt", "/console/..%2fsecret.txt", "/console/assets/..%2f..%2fsecret.txt", "/console/%2e%2e%2f%2e%2e%2fpackage.json", "/console/.claiim-build"]) {
      const res = await app.get(p);
      expect([p, res.status === 200 ? res.text : "refused"]).toEqual([p, expect.not.stringMatching(/top secret|stamp|"name"/)]);
      if (res.status === 200) expect(res.text).toBe(INDEX);
    }
  });

  test("only GET and HEAD: other methods find no route", async () => {
    expect((await app.post("/console/").send({}).expect(404)).body.code).toBe("route_not_found");
    expect((await app.head("/console/chron").expect(200)).headers["content-security-policy"]).toBe(STRICT);
  });

  test("config.json says there is no single sign-on when none is configured", async () => {
    const res = await app.get("/console/config.json").expect(200);
    expect(res.body).toEqual({ oidc: null });
    expect(res.headers["cache-control"]).toBe("no-store");
  });

  test("a console that was not built answers 404 console_not_built", async () => {
    const res = await serve(path.join(dir, "nowhere")).get("/console/").expect(404);
    expect(res.body).toMatchObject({ code: "console_not_built", detail: expect.stringMatching(/make setup/) });
  });
});

describe("the console's single sign-on settings, from the provider's discovery document", () => {
  let doc: Record<string, unknown>;
  let status = 200;
  let fetches = 0;
  let issuer = "";
  const provider = http.createServer((req, res) => {
    fetches += 1;
    if (req.url !== "/.well-known/openid-configuration") return void res.writeHead(404).end();
    res.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(doc));
  });
  const settings = (): OidcSettings => ({
    issuer,
    audience: "claiim",
    jwksUrl: `${issuer}/jwks`,
    rolesClaim: "claiim_roles",
    orgClaim: "claiim_org",
    clockSkewSeconds: 60,
    jwksCooldownSeconds: 3600,
    jwksCacheSeconds: 3600,
  });

  beforeAll(async () => {
    await new Promise<void>((r) => provider.listen(0, "127.0.0.1", () => r()));
    issuer = `http://127.0.0.1:${(provider.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => provider.close(() => r())));
  beforeEach(() => {
    fetches = 0;
    status = 200;
    doc = {
      issuer,
      authorization_endpoint: `${issuer}/authorize`,
      token_endpoint: "http://127.0.0.1:1/token",
      code_challenge_methods_supported: ["S256"],
      response_types_supported: ["code"],
    };
  });

  test("the console gets the endpoints and client id; the CSP lets it reach the token endpoint and nothing else", async () => {
    const app = serve(builtConsole(), settings(), "claiim-console");
    const config = await app.get("/console/config.json").expect(200);
    expect(config.body).toEqual({
      oidc: {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: "http://127.0.0.1:1/token",
        end_session_endpoint: null,
        client_id: "claiim-console",
        scope: "openid profile email",
        resource: null,
        token: "access_token",
      },
    });
    const page = await app.get("/console/").expect(200);
    expect(page.headers["content-security-policy"]).toContain("connect-src 'self' http://127.0.0.1:1;");
    // Fetched once, then kept.
    expect(fetches).toBe(1);
  });

  test("a document for another issuer, or a provider that is down, leaves only API keys, says why, and is not asked again at once", async () => {
    doc.issuer = "http://evil.example";
    const app = serve(builtConsole(), settings(), "claiim-console");
    const res = await app.get("/console/config.json").expect(200);
    expect(res.body).toEqual({ oidc: null, oidc_error: expect.stringMatching(/is not CLAIIM_OIDC_ISSUER/) });
    expect((await app.get("/console/").expect(200)).headers["content-security-policy"]).toBe(STRICT);
    await app.get("/console/config.json").expect(200);
    expect(fetches).toBe(1);

    status = 500;
    const down = serve(builtConsole(), settings(), "claiim-console");
    expect((await down.get("/console/config.json").expect(200)).body.oidc_error).toMatch(/answered 500/);
  });

  test("the checks a client owes a discovery document (RFC 8414 §3.3), and those PKCE needs", () => {
    const good = { issuer: "https://idp.example", authorization_endpoint: "https://idp.example/a", token_endpoint: "https://idp.example/t" };
    expect(checkMetadata(good, "https://idp.example")).toMatchObject({ token_endpoint: "https://idp.example/t", end_session_endpoint: null });
    expect(() => checkMetadata({ ...good, issuer: "https://idp.example/" }, "https://idp.example")).toThrow(/is not CLAIIM_OIDC_ISSUER/);
    expect(() => checkMetadata({ ...good, token_endpoint: "http://idp.example/t" }, "https://idp.example")).toThrow(/token_endpoint is not an https URL/);
    expect(() => checkMetadata({ ...good, authorization_endpoint: "javascript:alert(1)" }, "https://idp.example")).toThrow(/not an https URL/);
    expect(() => checkMetadata({ ...good, code_challenge_methods_supported: ["plain"] }, "https://idp.example")).toThrow(/PKCE/);
    expect(() => checkMetadata({ ...good, response_types_supported: ["id_token"] }, "https://idp.example")).toThrow(/authorization code/);
    expect(() => checkMetadata({ issuer: "https://idp.example" }, "https://idp.example")).toThrow(/authorization_endpoint is missing/);
    expect(() => checkMetadata([], "https://idp.example")).toThrow(/not a JSON object/);
  });

  test("settings: a console client id needs an issuer; the token choice is checked", () => {
    expect(() => consoleSettings({ CLAIIM_CONSOLE_OIDC_CLIENT_ID: "c" }, "/")).toThrow(/needs CLAIIM_OIDC_ISSUER/);
    expect(() => consoleSettings({ CLAIIM_CONSOLE_OIDC_CLIENT_ID: "c", CLAIIM_OIDC_ISSUER: "https://i", CLAIIM_CONSOLE_OIDC_TOKEN: "refresh_token" }, "/")).toThrow(/access_token or id_token/);
    expect(consoleSettings({}, "/srv/claiim")).toEqual({ dir: "/srv/claiim/dist/console", oidc: null });
  });
});
