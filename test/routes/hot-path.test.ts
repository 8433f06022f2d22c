// The decision is served by the hot path (src/http/hot-path.ts), straight from Node's HTTP server;
// the same route is mounted in Express too, which serves its path's other spellings (here, the
// trailing slash). Every request below is sent both ways, as raw HTTP, and the two answers must be
// the same: status, problem code and body, and the headers a client reads.
import http, { type IncomingHttpHeaders } from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { fakeApp, type FakeApp } from "../support/fake-core";
import { hotPath } from "../../src/http/hot-path";
import { createLogger } from "../../src/lib/logger";

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  body: Record<string, unknown> | null;
}

const staging = { action: "deploy", resource: "staging", purpose: "release 1.4.0", skill: { name: "deploy", version: "1.2.0" } };

describe("the hot path answers as Express does", () => {
  let app: FakeApp;
  let server: http.Server;
  let base: URL;
  let token: string;
  let apiKey: string;

  const send = (path: string, headers: Record<string, string | number>, body?: Buffer | string): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = http.request(new URL(path, base), { method: "POST", headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: Record<string, unknown> | null = null;
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            parsed = null;
          }
          resolve({ status: res.statusCode!, headers: res.headers, text, body: parsed });
        });
      });
      req.on("error", reject);
      req.end(body);
    });

  /** What must agree: the parts of an answer that are not new with each decision. */
  const comparable = (a: Answer) => {
    const body = a.body ? { ...a.body } : null;
    if (body) for (const volatile of ["decision_id", "timestamp", "chron", "instance", "request_id"]) if (volatile in body) body[volatile] = typeof body[volatile];
    return {
      status: a.status,
      body,
      contentType: a.headers["content-type"],
      lengthRight: Number(a.headers["content-length"]) === Buffer.byteLength(a.text),
      requestId: a.headers["x-request-id"],
      authenticate: a.headers["www-authenticate"],
      replayed: a.headers["idempotent-replayed"],
      retryAfter: a.headers["retry-after"],
    };
  };

  /** Sends the request to the hot path and to Express, and returns both answers, checked equal. */
  const bothWays = async (headers: Record<string, string | number>, body?: Buffer | string, path = "/v1/decisions"): Promise<Answer> => {
    const hot = await send(path, { "X-Request-Id": "same-id", ...headers }, body);
    const viaExpress = await send(path.replace("/v1/decisions", "/v1/decisions/"), { "X-Request-Id": "same-id", ...headers }, body);
    expect(comparable(hot)).toEqual(comparable(viaExpress));
    if (hot.body?.instance !== undefined) expect(hot.body.instance).toBe(path.split("?")[0]);
    return hot;
  };

  const json = { "Content-Type": "application/json" };
  const agent = () => ({ ...json, Authorization: `Bearer ${token}` });

  beforeAll(async () => {
    app = await fakeApp();
    const admin = { Authorization: `Bearer ${app.admin}` };
    await app.http.post("/v1/organizations").set(admin).send({ slug: "acme", name: "Acme" }).expect(201);
    await app.http.post("/v1/humans").set(admin).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
    const bot = (await app.http.post("/v1/agents").set(admin).send({ organization: "acme", name: "deploy-bot", owner: "alice@acme.example", skills: [{ name: "deploy", version: "1.2.0" }] }).expect(201)).body;
    token = (await app.http.post(`/v1/agents/${bot.id}/credentials`).set(admin).send({}).expect(201)).body.token;
    apiKey = (await app.http.post("/v1/api-keys").set(admin).send({ name: "audit", role: "auditor" }).expect(201)).body.secret;
    server = http.createServer(app.listener);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await app.core.approvals.stop();
  });

  test("decisions: allow, deny, approval_required, each recorded once each way", async () => {
    const before = app.stores.chron.rows.length;
    expect((await bothWays(agent(), JSON.stringify(staging))).body).toMatchObject({ decision: "allow", allow: true });
    expect((await bothWays(agent(), JSON.stringify({ ...staging, action: "delete" }))).body).toMatchObject({ allow: false });
    expect((await bothWays(agent(), JSON.stringify({ ...staging, resource: "production" }))).body).toMatchObject({ decision: "approval_required" });
    // The hot path answers a query string too; its answer is the same.
    expect((await bothWays(agent(), JSON.stringify(staging), "/v1/decisions?verbose=1")).body).toMatchObject({ allow: true });
    // Eight decisions, one record each, and the approval the first approval_required opened (the second way is answered with the same one).
    const written = app.stores.chron.rows.slice(before).map((r) => JSON.parse(r.content) as Record<string, unknown>);
    expect(written.filter((c) => "decision" in c)).toHaveLength(8);
    expect(written).toHaveLength(9);
  });

  test("credentials: none, malformed, forged, another kind's", async () => {
    expect((await bothWays(json, JSON.stringify(staging))).body).toMatchObject({ code: "credential_missing" });
    expect((await bothWays({ ...json, Authorization: "Basic abc" }, JSON.stringify(staging))).body).toMatchObject({ code: "credential_missing" });
    expect((await bothWays({ ...json, Authorization: `Bearer ${token.slice(0, -4)}AAAA` }, JSON.stringify(staging))).body).toMatchObject({ code: "token_invalid" });
    expect((await bothWays({ ...json, Authorization: `Bearer ${apiKey}` }, JSON.stringify(staging))).body).toMatchObject({ code: "agent_only" });
  });

  test("bodies the parser refuses", async () => {
    expect((await bothWays(agent(), "{not json")).body).toMatchObject({ status: 400, code: "malformed_json" });
    expect((await bothWays(agent(), '"a string"')).body).toMatchObject({ code: "malformed_json" });
    expect((await bothWays(agent(), "")).body).toMatchObject({ code: "validation_failed" });
    expect((await bothWays(agent(), "[]")).body).toMatchObject({ code: "validation_failed" });
    expect((await bothWays({ ...agent(), "Content-Type": "text/plain" }, JSON.stringify(staging))).body).toMatchObject({ code: "content_type_invalid" });
    expect((await bothWays({ Authorization: `Bearer ${token}` }, JSON.stringify(staging))).body).toMatchObject({ code: "content_type_invalid" });
    expect((await bothWays({ ...agent(), "Content-Type": "application/json; charset=latin1" }, JSON.stringify(staging))).body).toMatchObject({ status: 415, code: "charset_unsupported" });
    expect((await bothWays({ ...agent(), "Content-Encoding": "compress" }, JSON.stringify(staging))).body).toMatchObject({ status: 415, code: "content_encoding_unsupported" });
    expect((await bothWays({ ...agent(), "Content-Encoding": "gzip" }, "not gzip")).body).toMatchObject({ status: 400, code: "content_encoding_invalid" });
    const huge = JSON.stringify({ ...staging, purpose: "x".repeat(2 * 1024 * 1024) });
    expect((await bothWays(agent(), huge)).body).toMatchObject({ status: 413, code: "payload_too_large" });
  });

  test("bodies the parser takes, the schema and the text rule judge", async () => {
    expect((await bothWays({ ...agent(), "Content-Encoding": "gzip" }, gzipSync(JSON.stringify(staging)))).body).toMatchObject({ allow: true });
    expect((await bothWays({ ...agent(), "Content-Type": "application/json; charset=utf-8" }, JSON.stringify(staging))).body).toMatchObject({ allow: true });
    expect((await bothWays(agent(), JSON.stringify({ ...staging, extra: 1 }))).body).toMatchObject({ code: "validation_failed", errors: [{ path: "extra" }] });
    expect((await bothWays(agent(), JSON.stringify({ ...staging, action: "" }))).body).toMatchObject({ code: "validation_failed" });
    expect((await bothWays(agent(), '{"action":"\\ud800","resource":"r","purpose":"p","skill":{"name":"deploy","version":"1.2.0"}}')).body).toMatchObject({ code: "invalid_text" });
    expect((await bothWays(agent(), JSON.stringify({ ...staging, purpose: "nul\u0000" }))).body).toMatchObject({ code: "invalid_text" });
    const deep = `{"action":"a","resource":"r","purpose":"p","skill":{"name":"deploy","version":"1.2.0"},"x":${"[".repeat(200)}${"]".repeat(200)}}`;
    expect((await bothWays(agent(), deep)).body).toMatchObject({ code: "json_too_deep" });
  });

  test("Idempotency-Key: a bad one is refused, a good one replays with its header", async () => {
    expect((await bothWays({ ...agent(), "Idempotency-Key": "has space" }, JSON.stringify(staging))).body).toMatchObject({ code: "idempotency_key_invalid" });
    const first = await send("/v1/decisions", { ...agent(), "Idempotency-Key": "k-1" }, JSON.stringify(staging));
    const again = await bothWays({ ...agent(), "Idempotency-Key": "k-1" }, JSON.stringify(staging));
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.body!.decision_id).toBe(first.body!.decision_id);
    expect((await bothWays({ ...agent(), "Idempotency-Key": "k-1" }, JSON.stringify({ ...staging, purpose: "other" }))).body).toMatchObject({ status: 409, code: "idempotency_key_reused" });
  });

  test("a caller that hangs up mid-body, or lies about its length, leaves the server answering and nothing unhandled", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const before = app.stores.chron.rows.length;
      for (const lie of ["short", "long"]) {
        await new Promise<void>((resolve) => {
          const socket = net.connect(Number(base.port), "127.0.0.1", () => {
            const body = JSON.stringify(staging);
            const declared = lie === "short" ? body.length + 100 : body.length - 10;
            socket.write(`POST /v1/decisions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n\r\n${body}`);
            setTimeout(() => socket.destroy(), 50);
          });
          socket.on("close", () => resolve());
          socket.on("error", () => undefined);
        });
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      // The short body was never whole, so nothing was decided for it; the long one was cut at its
      // declared length (its tail is the next request, which is garbage): malformed JSON, no decision either.
      expect(app.stores.chron.rows.length).toBe(before);
      expect((await send("/v1/decisions", agent(), JSON.stringify(staging))).body).toMatchObject({ allow: true });
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  test("metrics count the hot path's answers under the declared route", async () => {
    const count = async () => {
      const { text } = await app.core.metrics.scrape();
      const line = text.split("\n").find((l) => l.startsWith("claiim_http_requests_total{") && l.includes('route="/v1/decisions"') && l.includes('status="401"') && l.includes('method="POST"'));
      return line ? Number(line.split(" ").pop()) : 0;
    };
    const before = await count();
    await send("/v1/decisions", json, JSON.stringify(staging));
    expect(await count()).toBe(before + 1);
  });

  test("only the exact path and method are taken; everything else is left to Express", () => {
    const routes = [{ method: "post", path: "/v1/decisions", hotPath: true, summary: "", tags: [], access: { public: true }, responses: {}, handle: () => ({ status: 204 }) }] as never;
    const observing = { open: (_m: string, _p: string, _h: unknown, _r: unknown, l: object) => ({ requestId: "x", span: null, ...l }), close: () => undefined };
    const hot = hotPath(routes, { authenticate: () => Promise.reject(new Error("none")), defaultBodyLimit: 10 }, observing, () => "127.0.0.1", createLogger("silent"))!;
    const fakeRes = () => ({ once: () => undefined, setHeader: () => undefined, end: () => undefined }) as never;
    const asked = (method: string, url: string) => hot({ method, url, headers: {} } as never, fakeRes());
    expect(asked("POST", "/v1/decisions")).toBe(true);
    expect(asked("POST", "/v1/decisions?a=b")).toBe(true);
    for (const [method, url] of [
      ["GET", "/v1/decisions"],
      ["OPTIONS", "/v1/decisions"],
      ["POST", "/v1/decisions/"],
      ["POST", "/V1/decisions"],
      ["POST", "/v1/decisions/x"],
      ["POST", "/v1//decisions"],
      ["POST", "/v1/decision"],
    ])
      expect(asked(method, url)).toBe(false);
  });
});
