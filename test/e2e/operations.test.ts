import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { randomBytes } from "node:crypto";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { accessToken, DEPLOY_SKILL, registerDeployBot } from "../support/agents";
import { failWrites, sql } from "../support/sql";
import { until } from "../support/until";
import { parseExposition, type Exposition } from "../support/prometheus";
import { startClaiimProcess } from "../support/process";

const staging = { action: "deploy", resource: "staging", purpose: "release", skill: DEPLOY_SKILL };
const production = { ...staging, resource: "production" };

/** Scrapes /metrics and parses it with the Prometheus project's parser: a malformed exposition throws. */
async function scrape(s: TestServer, auth = s.admin): Promise<Exposition> {
  const res = await s.http.get("/metrics").set({ Authorization: `Bearer ${auth}` }).expect(200);
  expect(res.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(res.text);
}

const chronCount = async (s: TestServer) => Number((await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records"))[0].n);

describe.each(databaseKinds())("operating CLAIIM on %s", (kind) => {
  describe("metrics", () => {
    let s: TestServer;
    beforeAll(async () => {
      s = await startTestServer(kind, { env: { CLAIIM_METRICS_ADDRESS: "127.0.0.1:0" } });
    });
    afterAll(() => s?.stop());

    test("/metrics counts decisions by outcome and policy version, times them, and counts Chron batches, tokens, auth failures and HTTP by route", async () => {
      const bot = await registerDeployBot(s);
      const token = await accessToken(s, bot);
      const agent = { Authorization: `Bearer ${token}` };
      for (let i = 0; i < 3; i++) await s.http.post("/v1/decisions").set(agent).send(staging).expect(200);
      const denied = await s.http.post("/v1/decisions").set(agent).send({ ...staging, skill: { name: "deploy", version: "9.9.9" } }).expect(200);
      expect(denied.body.decision).toBe("deny");
      expect((await s.http.post("/v1/decisions").set(agent).send(production).expect(200)).body.decision).toBe("approval_required");
      await s.http.get("/v1/agents").set({ Authorization: "Bearer claiim_not-a-real-key" }).expect(401);
      await s.http.get(`/v1/agents/${bot.agentId}`).set({ Authorization: `Bearer ${s.admin}` }).expect(200);

      const m = await scrape(s);
      expect(m.value("claiim_decisions_total", { decision: "allow", policy_version: "1" })).toBe(3);
      expect(m.value("claiim_decisions_total", { decision: "deny", policy_version: "1" })).toBe(1);
      expect(m.value("claiim_decisions_total", { decision: "approval_required", policy_version: "1" })).toBe(1);
      expect(m.value("claiim_decision_duration_seconds_count")).toBe(5);
      expect(m.value("claiim_policy_evaluation_duration_seconds_count", { outcome: "ok" })).toBeGreaterThanOrEqual(5);
      expect(m.value("claiim_tokens_issued_total")).toBe(1);
      expect(m.value("claiim_authentication_failures_total", { code: "api_key_invalid" })).toBe(1);
      expect(m.value("claiim_http_requests_total", { method: "GET", route: "/v1/agents/{id}", status: "200" })).toBe(1);
      expect(m.value("claiim_http_requests_total", { method: "POST", route: "/v1/decisions", status: "200" })).toBe(5);
      // Every record committed so far went through a batch.
      expect(m.value("claiim_chron_batch_records_sum")).toBe(await chronCount(s));
      expect(m.value("claiim_chron_commit_duration_seconds_count", { outcome: "ok" })).toBe(m.value("claiim_chron_batch_records_count"));
      // A tree head is signed every second: one may land between the scrape and the query, so the
      // scrape is taken between two reads of the last signed head and must match one of them.
      const lastSigned = async () => Number((await sql(s.claiim.db, "SELECT COALESCE(MAX(seq), 0) AS n FROM chron_checkpoints"))[0].n);
      const signedBefore = await lastSigned();
      const unsigned = (await scrape(s)).value("claiim_chron_unsigned_records");
      const signedAfter = await lastSigned();
      const records = await chronCount(s);
      expect([records - signedBefore, records - signedAfter]).toContain(unsigned);
      expect(m.types.get("claiim_chron_checkpoint_lag_seconds")).toBe("gauge");
      expect(m.types.get("claiim_decision_duration_seconds")).toBe("histogram");
      // A histogram's buckets are cumulative and end with +Inf at its count.
      const buckets = m.all("claiim_decision_duration_seconds_bucket").map((b) => Number(b.value));
      expect(buckets).toEqual([...buckets].sort((x, y) => x - y));
      expect(m.value("claiim_decision_duration_seconds_bucket", { le: "+Inf" })).toBe(5);
      expect(m.value("claiim_policy_evaluations_total")).toBeGreaterThanOrEqual(5);
      // Process metrics, from prom-client's defaults.
      expect(m.value("claiim_process_resident_memory_bytes")).toBeGreaterThan(0);
    });

    test("only an admin or a metrics key reads /metrics; a separate listener serves it without a credential, and nothing else", async () => {
      const key = (role: string) => s.http.post("/v1/api-keys").set({ Authorization: `Bearer ${s.admin}` }).send({ name: `${role} key`, role }).expect(201);
      const metricsKey = (await key("metrics")).body.secret;
      const auditor = (await key("auditor")).body.secret;
      await scrape(s, metricsKey);
      expect((await s.http.get("/metrics").set({ Authorization: `Bearer ${auditor}` }).expect(403)).body.code).toBe("role_not_allowed");
      await s.http.get("/metrics").expect(401);
      // The metrics key opens nothing else.
      expect((await s.http.get("/v1/agents").set({ Authorization: `Bearer ${metricsKey}` }).expect(403)).body.code).toBe("role_not_allowed");
      const url = s.claiim.metricsUrl!;
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(parseExposition(await res.text()).types.get("claiim_decisions")).toBe("counter");
      expect((await fetch(url.replace(/\/metrics$/, "/v1/agents"))).status).toBe(404);
    });
  });

  describe("rate limits", () => {
    let s: TestServer;
    beforeAll(async () => {
      s = await startTestServer(kind, {
        env: { CLAIIM_RATE_LIMIT_TOKEN_PER_CLIENT: "3", CLAIIM_RATE_LIMIT_FAILURES_PER_ADDRESS: "4", CLAIIM_RATE_LIMIT_FAILURES_PER_CLIENT: "100", CLAIIM_RATE_LIMIT_WINDOW_SECONDS: "30" },
      });
    });
    afterAll(() => s?.stop());

    test("a client past its token requests gets 429 with Retry-After; refusals are counted, not recorded in Chron", async () => {
      const bot = await registerDeployBot(s);
      for (let i = 0; i < 3; i++) await accessToken(s, bot);
      const before = await chronCount(s);
      for (let i = 0; i < 5; i++) {
        const res = await s.http.post("/oauth/token").auth(bot.clientId, bot.clientSecret).type("form").send({ grant_type: "client_credentials" }).expect(429);
        expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
        expect(res.body).toMatchObject({ status: 429, code: "rate_limited", detail: expect.stringMatching(/too many token requests for this client; try again in \d+ s/) });
        expect(Number(res.headers["retry-after"])).toBeGreaterThanOrEqual(1);
        expect(Number(res.headers["retry-after"])).toBeLessThanOrEqual(30);
      }
      expect(await chronCount(s)).toBe(before);
      expect((await scrape(s)).value("claiim_rate_limited_total", { limit: "token_per_client" })).toBe(5);
      // Another client is not affected.
      await accessToken(s, await registerDeployBot(s, "globex"));
    });

    test("an address past its failed authentications is refused before its credential is checked, even a good one; requests without one still pass", async () => {
      for (let i = 0; i < 4; i++) expect((await s.http.get("/v1/agents").set({ Authorization: `Bearer claiim_guess${i}` }).expect(401)).body.code).toBe("api_key_invalid");
      const blocked = await s.http.get("/v1/agents").set({ Authorization: `Bearer ${s.admin}` }).expect(429);
      expect(blocked.body).toMatchObject({ code: "rate_limited", detail: expect.stringMatching(/too many failed authentications from this address/) });
      expect(Number(blocked.headers["retry-after"])).toBeGreaterThanOrEqual(1);
      await s.http.get("/healthz").expect(200);
      await s.http.post("/oauth/token").type("form").send({ grant_type: "client_credentials", client_id: "x", client_secret: "y" }).expect(429);
    });

    test("with CLAIIM_TRUST_PROXY, the address counted is the client's from X-Forwarded-For", async () => {
      const p = await startTestServer(kind, { env: { CLAIIM_RATE_LIMIT_FAILURES_PER_ADDRESS: "2", CLAIIM_TRUST_PROXY: "loopback" } });
      try {
        const from = (ip: string) => ({ "X-Forwarded-For": ip });
        for (let i = 0; i < 2; i++) await p.http.get("/v1/agents").set({ Authorization: "Bearer claiim_wrong", ...from("203.0.113.7") }).expect(401);
        await p.http.get("/v1/agents").set({ Authorization: `Bearer ${p.admin}`, ...from("203.0.113.7") }).expect(429);
        await p.http.get("/v1/agents").set({ Authorization: `Bearer ${p.admin}`, ...from("198.51.100.9") }).expect(200);
        // The decision, served without Express (src/http/hot-path.ts), names the same client.
        for (let i = 0; i < 2; i++) await p.http.post("/v1/decisions").set({ Authorization: "Bearer not.a.token", ...from("192.0.2.44") }).send(staging).expect(401);
        expect((await p.http.post("/v1/decisions").set({ Authorization: "Bearer not.a.token", ...from("192.0.2.44") }).send(staging).expect(429)).body.code).toBe("rate_limited");
        await p.http.get("/v1/agents").set({ Authorization: `Bearer ${p.admin}`, ...from("192.0.2.44") }).expect(429);
        await p.http.post("/v1/decisions").set({ Authorization: "Bearer not.a.token", ...from("198.51.100.9") }).send(staging).expect(401);
      } finally {
        await p.stop();
      }
    });
  });

  describe("readiness", () => {
    test("/readyz reports the Chron writer and checkpointer; a failing commit or checkpoint makes CLAIIM not ready, with the reason, until it works again", async () => {
      const s = await startTestServer(kind, { env: { CLAIIM_CHECKPOINT_EVERY_RECORDS: "2" } });
      try {
        const ready = await s.http.get("/readyz").expect(200);
        expect(ready.body).toMatchObject({ status: "ready", policy_version: 1, chron: { writer: { status: "ok", queued: 0 }, checkpointer: { status: "ok" } } });
        const bot = await registerDeployBot(s);
        const agent = { Authorization: `Bearer ${await accessToken(s, bot)}` };

        const restoreCheckpoints = await failWrites(s.claiim.db, "chron_checkpoints", "INSERT");
        await s.http.post("/v1/decisions").set(agent).send(staging).expect(200);
        await s.http.post("/v1/decisions").set(agent).send(staging).expect(200);
        const cp = await until("readiness to fail with the checkpointer", async () => {
          const r = await s.http.get("/readyz");
          return r.status === 503 ? r : undefined;
        });
        expect(cp.body).toMatchObject({ code: "not_ready", detail: expect.stringMatching(/^signing Chron checkpoints fails: .*simulated disk failure/), chron: { checkpointer: { status: "failing" } } });
        await restoreCheckpoints();
        await s.http.post("/v1/decisions").set(agent).send(staging).expect(200);
        await s.http.post("/v1/decisions").set(agent).send(staging).expect(200);
        await until("readiness to come back", async () => (await s.http.get("/readyz")).status === 200);

        const restoreRecords = await failWrites(s.claiim.db, "chron_records", "INSERT");
        expect((await s.http.post("/v1/decisions").set(agent).send(staging).expect(503)).body.code).toBe("chron_unavailable");
        const writer = await s.http.get("/readyz").expect(503);
        expect(writer.body).toMatchObject({ detail: expect.stringMatching(/^the Chron writer's last commit failed: .*simulated disk failure/), chron: { writer: { status: "failing" } } });
        await restoreRecords();
        await s.http.post("/v1/decisions").set(agent).send(staging).expect(200);
        await s.http.get("/readyz").expect(200);
        expect((await scrape(s)).value("claiim_chron_commit_duration_seconds_count", { outcome: "failed" })).toBeGreaterThanOrEqual(1);
        expect((await s.http.get("/v1/chron/verify").set({ Authorization: `Bearer ${s.admin}` })).body.valid).toBe(true);
      } finally {
        await s.stop();
      }
    });
  });

  describe("shutdown", () => {
    test("SIGTERM under load: readiness answers 503 while requests drain, every decision answered is in Chron and signed, and the process ends within the bound, its last line saying so", async () => {
      const p = await startClaiimProcess(kind, { CLAIIM_SHUTDOWN_TIMEOUT_SECONDS: "10", CLAIIM_SHUTDOWN_DELAY_SECONDS: "1" });
      try {
        const bot = await registerDeployBot(p);
        const agent = { Authorization: `Bearer ${await accessToken(p, bot)}`, "Content-Type": "application/json" };
        const answered: string[] = [];
        const readiness: number[] = [];
        let failures = 0;
        let sigterm = 0;
        let answeredAt503: number | null = null;
        // Clients on keep-alive connections, as a busy agent fleet would be, until CLAIIM stops answering.
        const decide = async () => {
          for (;;) {
            const res = await fetch(`${p.url}/v1/decisions`, { method: "POST", headers: agent, body: JSON.stringify(staging) }).catch(() => null);
            if (!res) return void (failures += 1);
            if (res.status !== 200) return void (await res.body?.cancel());
            answered.push(((await res.json()) as { decision_id: string }).decision_id);
          }
        };
        const probe = async () => {
          for (;;) {
            const res = await fetch(`${p.url}/readyz`).catch(() => null);
            if (!res) return;
            await res.body?.cancel();
            if (sigterm) readiness.push(res.status);
            if (res.status === 503 && answeredAt503 === null) answeredAt503 = answered.length;
            await new Promise((r) => setTimeout(r, 5));
          }
        };
        const clients = [...Array.from({ length: 12 }, decide), probe()];
        await until("some load", () => answered.length >= 100, 30_000);
        const before = answered.length;
        sigterm = Date.now();
        p.child.kill("SIGTERM");
        const exit = await p.exited;
        const took = Date.now() - sigterm;
        await Promise.all(clients);

        expect(exit).toEqual({ code: 0, signal: null });
        expect(took).toBeLessThan(10_000);
        expect(answered.length).toBeGreaterThan(before);
        // Readiness answered 503 while CLAIIM still served (CLAIIM_SHUTDOWN_DELAY_SECONDS), and never came back.
        const first503 = readiness.indexOf(503);
        expect(first503).toBeGreaterThanOrEqual(0);
        expect(readiness.slice(first503).every((x) => x === 503)).toBe(true);
        // Decisions were still answered after readiness said 503: the listener stayed open meanwhile.
        expect(answered.length).toBeGreaterThan(answeredAt503!);
        const logs = p.logs();
        expect(logs.find((l) => l.message === "stopping: readiness now answers 503; requests in flight and Chron commits get CLAIIM_SHUTDOWN_TIMEOUT_SECONDS to finish")).toMatchObject({ signal: "SIGTERM" });
        expect(logs[logs.length - 1]).toMatchObject({ level: "info", message: "CLAIIM stopped" });
        expect(logs.filter((l) => l.level === "error" || l.level === "warn")).toEqual([]);

        // Nothing lost: every decision answered is in Chron, and all of it is signed. A decision can be
        // recorded and its answer never read, when a client's connection ends as CLAIIM stops (seen
        // once in several runs on a loaded machine): at most one per client, each in Chron all the same.
        const recorded = (await sql(p.db, "SELECT id FROM chron_records WHERE kind = 'decision'")).map((r) => r.id as string);
        const inChron = new Set(recorded);
        expect(answered.filter((id) => !inChron.has(id))).toEqual([]);
        expect(recorded.length - answered.length).toBeLessThanOrEqual(12);
        const [tail] = await sql(p.db, "SELECT (SELECT MAX(seq) FROM chron_records) AS records, (SELECT MAX(seq) FROM chron_checkpoints) AS signed");
        expect(Number(tail.signed)).toBe(Number(tail.records));
      } finally {
        await p.stop();
      }
    });
  });

  describe("traces", () => {
    let receiver: Server;
    let spans: { traceId: string; spanId: string; parentSpanId?: string; name: string; attributes: { key: string; value: Record<string, unknown> }[] }[];
    let endpoint: string;
    beforeAll(async () => {
      spans = [];
      // An OTLP/HTTP receiver, as a collector would be: JSON bodies of ExportTraceServiceRequest.
      receiver = createServer((req, res) => {
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => {
          expect([req.method, req.url, req.headers["content-type"]]).toEqual(["POST", "/v1/traces", "application/json"]);
          const doc = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: typeof spans }[] }[] };
          for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
          res.writeHead(200, { "Content-Type": "application/json" }).end("{}");
        });
      });
      await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
      endpoint = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/v1/traces`;
    });
    afterAll(() => new Promise((r) => receiver.close(r)));

    // In a process of its own: the OTLP exporter loads Node's http module dynamically, which jest's module sandbox refuses.
    test("with an OTLP endpoint, each request is a span continuing the caller's traceparent, and the decision's Chron record carries its trace_id and span_id", async () => {
      const p = await startClaiimProcess(kind, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: endpoint, OTEL_SERVICE_NAME: "claiim-test" });
      try {
        const bot = await registerDeployBot(p);
        const agent = { Authorization: `Bearer ${await accessToken(p, bot)}` };
        const traceId = randomBytes(16).toString("hex");
        const parentId = randomBytes(8).toString("hex");
        const res = await p.http.post("/v1/decisions").set({ ...agent, traceparent: `00-${traceId}-${parentId}-01` }).send(staging).expect(200);
        const [row] = await sql(p.db, "SELECT content FROM chron_records WHERE id = $1", [res.body.decision_id]);
        const record = JSON.parse(row.content as string);
        expect(record).toMatchObject({ trace_id: traceId, span_id: expect.stringMatching(/^[0-9a-f]{16}$/) });
        const span = await until("the decision's span at the receiver", () => spans.find((x) => x.spanId === record.span_id));
        expect(span).toMatchObject({ traceId, parentSpanId: parentId, name: "POST /v1/decisions" });
        const attrs = Object.fromEntries(span.attributes.map((a) => [a.key, Object.values(a.value)[0]]));
        expect(attrs).toMatchObject({ "claiim.decision_id": res.body.decision_id, "claiim.decision": "allow", "http.route": "/v1/decisions", "http.response.status_code": 200 });
        // Without a traceparent, a new trace; a record always names the trace it belongs to.
        const own = await p.http.post("/v1/decisions").set(agent).send(staging).expect(200);
        const [ownRow] = await sql(p.db, "SELECT content FROM chron_records WHERE id = $1", [own.body.decision_id]);
        const ownRecord = JSON.parse(ownRow.content as string);
        expect(ownRecord.trace_id).toMatch(/^[0-9a-f]{32}$/);
        expect(ownRecord.trace_id).not.toBe(traceId);
        expect((await p.http.get("/v1/chron/verify").set({ Authorization: `Bearer ${p.admin}` })).body.valid).toBe(true);
        // Stopping flushes what was buffered: the second decision's span arrives, before the process has exited.
        p.child.kill("SIGTERM");
        await p.exited;
        expect(spans.find((x) => x.spanId === ownRecord.span_id)).toMatchObject({ traceId: ownRecord.trace_id, name: "POST /v1/decisions" });
      } finally {
        await p.stop();
      }
    });

    test("without an endpoint, tracing is off and records carry no trace", async () => {
      const s = await startTestServer(kind);
      try {
        const bot = await registerDeployBot(s);
        const res = await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${await accessToken(s, bot)}`, traceparent: `00-${"a".repeat(32)}-${"b".repeat(16)}-01` }).send(staging).expect(200);
        const [row] = await sql(s.claiim.db, "SELECT content FROM chron_records WHERE id = $1", [res.body.decision_id]);
        expect(JSON.parse(row.content as string)).not.toHaveProperty("trace_id");
      } finally {
        await s.stop();
      }
    });
  });
});
