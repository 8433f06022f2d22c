import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { startTestServer, type TestServer } from "../support/claiim";
import { databaseKinds } from "../support/databases";
import { freePort, spawnReplica, type Replica } from "../support/replicas";
import { sql } from "../support/sql";
import { until } from "../support/until";

/*
 * docker-compose.yml's arrangement without Docker (none on the test machines): three CLAIIM
 * processes on one PostgreSQL database, with the environment compose gives them, behind real
 * HAProxy running deploy/haproxy.cfg (only the addresses changed to loopback ports). What the
 * arrangement promises: any replica takes any request; a replica killed outright costs at most the
 * requests already sent to it; a replica stopped with SIGTERM (a rolling restart) costs none; and
 * every decision the balancer passes on as answered is in the one Chron, which verifies.
 */

const ROOT = path.resolve(__dirname, "../..");
const PYTHON = process.env.CLAIIM_TEST_PYTHON ?? path.join(ROOT, ".tools/venv/bin/python");
const HAPROXY = process.env.CLAIIM_TEST_HAPROXY ?? "/usr/sbin/haproxy";
const skill = { name: "deploy", version: "1.2.0" };
const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How long deploy/haproxy.cfg takes to see a replica gone: `fall` 2 checks, `inter` 1 s apart, and a margin for a loaded machine. */
const DETECTION_MS = 3000;

/** The environment compose gives replica `name`, less what names places in its containers. */
function composeEnvironment(name: string): Record<string, string> {
  const json = execFileSync(PYTHON, ["-c", "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)", path.join(ROOT, "docker-compose.yml")], { encoding: "utf8" });
  const env = { ...(JSON.parse(json).services[name].environment as Record<string, string>) };
  delete env.DATABASE_URL;
  delete env.CLAIIM_WITNESS_DIR;
  return env;
}

/** deploy/haproxy.cfg with its listener and its servers on loopback ports. */
function renderHaproxy(listen: number, replicas: Replica[]): string {
  let cfg = fs.readFileSync(path.join(ROOT, "deploy/haproxy.cfg"), "utf8");
  expect(cfg).toMatch(/^ {2}bind :8080$/m);
  cfg = cfg.replace(/^ {2}bind :8080$/m, `  bind 127.0.0.1:${listen}`);
  replicas.forEach((r, i) => {
    const line = new RegExp(`^( {2}server claiim-${i + 1}) claiim-${i + 1}:8080$`, "m");
    expect(cfg).toMatch(line);
    cfg = cfg.replace(line, `$1 ${new URL(r.base).host}`);
  });
  expect(cfg).not.toMatch(/claiim-\d:8080/);
  return cfg;
}

/** Decisions a replica has answered, from its own /metrics. */
async function answered(r: Replica, admin: string): Promise<number> {
  const text = await (await fetch(`${r.base}/metrics`, { headers: bearer(admin) })).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("claiim_decisions_total{"))
    .reduce((n, l) => n + Number(l.split(" ").pop()), 0);
}

interface Sent {
  startMs: number;
  endMs: number;
  status: number | null;
  decisionId?: string;
  /** What was sent, as an SDK would send it again. */
  body: object;
  key: string;
}

let run = 0;

function send(base: string, token: string, body: object, key: string): Promise<Response | null> {
  return fetch(`${base}/v1/decisions`, { method: "POST", headers: { ...bearer(token), "Content-Type": "application/json", "Idempotency-Key": key }, body: JSON.stringify(body) }).catch(() => null);
}

/** Decisions through `base`, `concurrency` at a time, until `stop()` says so. */
async function load(base: string, token: string, concurrency: number, stop: () => boolean): Promise<Sent[]> {
  const sent: Sent[] = [];
  run += 1;
  const loop = async (n: number) => {
    for (let i = n; !stop(); i += concurrency) {
      const startMs = Date.now();
      const body = { action: "deploy", resource: i % 2 ? "production" : "staging", purpose: "balanced", skill };
      // Every request keyed, as the SDKs send them.
      const key = `lb-load-${process.pid}-${run}-${i}`;
      const res = await send(base, token, body, key);
      const s: Sent = { startMs, endMs: 0, status: res?.status ?? null, body, key };
      if (res?.status === 200) s.decisionId = ((await res.json()) as { decision_id: string }).decision_id;
      else await res?.arrayBuffer().catch(() => undefined);
      s.endMs = Date.now();
      sent.push(s);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, n) => loop(n)));
  return sent;
}

const onPostgres = databaseKinds().includes("postgresql") ? describe : describe.skip;

onPostgres("three replicas on PostgreSQL behind HAProxy, as docker-compose.yml runs them", () => {
  let s: TestServer;
  let token: string;
  let haproxy: ChildProcess;
  let lb: string;
  let haproxyLog = "";
  const replicas: Replica[] = [];

  beforeAll(async () => {
    expect(fs.existsSync(HAPROXY)).toBe(true);
    s = await startTestServer("postgresql");
    await s.http.post("/v1/organizations").set(bearer(s.admin)).send({ slug: "acme", name: "Acme" }).expect(201);
    await s.http.post("/v1/humans").set(bearer(s.admin)).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
    const agent = (await s.http.post("/v1/agents").set(bearer(s.admin)).send({ organization: "acme", name: "deploy-bot", owner: "alice@acme.example", skills: [skill] }).expect(201)).body;
    token = (await s.http.post(`/v1/agents/${agent.id}/credentials`).set(bearer(s.admin)).send({}).expect(201)).body.token;
    replicas.push(...(await Promise.all([1, 2, 3].map((n) => spawnReplica(s, composeEnvironment(`claiim-${n}`))))));
    const port = await freePort();
    const cfg = path.join(fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "haproxy-")), "haproxy.cfg");
    fs.writeFileSync(cfg, renderHaproxy(port, replicas));
    haproxy = spawn(HAPROXY, ["-f", cfg, "-db"], { stdio: ["ignore", "pipe", "pipe"] });
    for (const out of [haproxy.stdout!, haproxy.stderr!]) out.setEncoding("utf8").on("data", (c: string) => (haproxyLog += c));
    lb = `http://127.0.0.1:${port}`;
    // Ready once every replica has passed its `rise` checks and takes requests.
    await until("HAProxy to send to every replica", async () => {
      await Promise.all(Array.from({ length: 12 }, () => fetch(`${lb}/v1/decisions`, { method: "POST", headers: { ...bearer(token), "Content-Type": "application/json" }, body: JSON.stringify({ action: "deploy", resource: "staging", purpose: "warm-up", skill }) }).then((r) => r.arrayBuffer(), () => undefined)));
      return (await Promise.all(replicas.map((r) => answered(r, s.admin)))).every((n) => n > 0);
    }, 30_000);
  }, 180_000);

  afterAll(async () => {
    haproxy?.kill("SIGKILL");
    await Promise.all(replicas.map((r) => r.stop()));
    await s?.stop();
  });

  /** Every decision the balancer passed on as answered, in Chron exactly once; the chain verifies. */
  async function allRecorded(sent: Sent[]): Promise<void> {
    const ids = sent.filter((x) => x.decisionId).map((x) => x.decisionId!);
    const rows = await sql(s.claiim.db, "SELECT id FROM chron_records WHERE kind = 'decision'");
    const recorded = new Set(rows.map((r) => r.id as string));
    expect(ids.filter((id) => !recorded.has(id))).toEqual([]);
    expect(new Set(ids).size).toBe(ids.length);
    expect((await s.http.get("/v1/chron/verify").set(bearer(s.admin)).expect(200)).body).toMatchObject({ valid: true });
  }

  test("a retry with the same Idempotency-Key reaches the replica that answered first, and gets that answer, not a second decision", async () => {
    const keys = Array.from({ length: 30 }, (_, i) => `lb-retry-${i}-${Date.now()}`);
    const ask = (key: string, i: number) =>
      fetch(`${lb}/v1/decisions`, {
        method: "POST",
        headers: { ...bearer(token), "Content-Type": "application/json", "Idempotency-Key": key },
        body: JSON.stringify({ action: "deploy", resource: i % 2 ? "production" : "staging", purpose: "retried", skill }),
      }).then(async (r) => ({ status: r.status, replayed: r.headers.get("idempotent-replayed"), body: (await r.json()) as { decision_id: string } }));
    const first = await Promise.all(keys.map(ask));
    const again = await Promise.all(keys.map(ask));
    expect(first.map((r) => r.status)).toEqual(keys.map(() => 200));
    expect(again.map((r) => [r.status, r.replayed, r.body.decision_id])).toEqual(first.map((r) => [200, "true", r.body.decision_id]));
    // One record per key, although three processes answer.
    const rows = await sql(s.claiim.db, "SELECT id FROM chron_records WHERE kind = 'decision' AND content LIKE '%lb-retry-%'");
    expect(rows.map((r) => r.id).sort()).toEqual(first.map((r) => r.body.decision_id).sort());
  }, 60_000);

  test("a replay started through the balancer is polled through it to its end, whichever replica each poll reaches, and every replica shows the same result", async () => {
    const admin = { ...bearer(s.admin), "Content-Type": "application/json" };
    const started = await fetch(`${lb}/v1/policies/1/replay`, { method: "POST", headers: admin, body: JSON.stringify({ from: new Date(Date.now() - 3600_000).toISOString() }) });
    expect(started.status).toBe(202);
    const location = started.headers.get("location")!;
    const polls: number[] = [];
    let last: { state: string } = (await started.json()) as { state: string };
    for (const end = Date.now() + 30_000; last.state === "running" && Date.now() < end; ) {
      const r = await fetch(`${lb}${location}`, { headers: bearer(s.admin) });
      polls.push(r.status);
      last = (await r.json()) as { state: string };
      if (last.state === "running") await sleep(25);
    }
    // Round robin over three replicas: a poll that reached one other than the one running it was a 404 before replays were saved.
    expect(polls.length).toBeGreaterThanOrEqual(1);
    expect(polls).toEqual(polls.map(() => 200));
    expect(last).toMatchObject({ state: "done", error: null });
    const everywhere = await Promise.all(replicas.map(async (r) => (await fetch(`${r.base}${location}`, { headers: bearer(s.admin) })).json()));
    expect(everywhere).toEqual(replicas.map(() => last));
    for (let i = 0; i < 6; i++) expect((await fetch(`${lb}${location}`, { headers: bearer(s.admin) })).status).toBe(200);
  }, 60_000);

  test("a rolling restart: a replica stopped with SIGTERM under load leaves the rotation before it stops answering, and no request fails", async () => {
    const leaving = replicas[1];
    const before = await Promise.all(replicas.map((r) => answered(r, s.admin)));
    let done = false;
    const running = load(lb, token, 12, () => done);
    await sleep(1000);
    const stopped = leaving.stop();
    await stopped;
    await sleep(1000);
    done = true;
    const sent = await running;
    expect(sent.filter((x) => x.status !== 200).map((x) => x.status)).toEqual([]);
    expect(sent.length).toBeGreaterThan(50);
    // The others took the load.
    const after = await Promise.all([replicas[0], replicas[2]].map((r) => answered(r, s.admin)));
    expect(after[0]).toBeGreaterThan(before[0]);
    expect(after[1]).toBeGreaterThan(before[2]);
    await allRecorded(sent);
    expect(haproxyLog).toMatch(/claiim-2 is DOWN/);
  }, 120_000);

  test("kill -9 of a replica under load: only requests already sent to it can fail, and only around the kill; the others take the rest", async () => {
    const dying = replicas[2];
    let done = false;
    const running = load(lb, token, 12, () => done);
    await sleep(1000);
    const killedAt = Date.now();
    await dying.kill();
    await sleep(DETECTION_MS + 2000);
    done = true;
    const sent = await running;
    const failed = sent.filter((x) => x.status !== 200);
    // A request already on its way to the killed replica, or sent on a connection to it that the
    // balancer kept open, gets no answer: a 502, or its connection closed (it is never sent again:
    // it may have been decided; the SDKs retry either with the same Idempotency-Key). A connection
    // refused goes to another replica, and within 2 failed checks (2 × 1 s) the balancer sends the
    // dead one nothing more: from then on, nothing fails.
    expect(failed.filter((x) => (x.status !== 502 && x.status !== null) || x.startMs > killedAt + DETECTION_MS).map((x) => ({ status: x.status, afterKillMs: x.startMs - killedAt }))).toEqual([]);
    expect(sent.filter((x) => x.startMs > killedAt + DETECTION_MS && x.status === 200).length).toBeGreaterThan(20);
    await allRecorded(sent);
    // What the SDKs do with a 502 or a closed connection: send the request again, with its key.
    // Another replica answers: with the record the dead one committed, if it did, else with a new
    // decision; never both.
    const retried = await Promise.all(failed.map(async (x) => (await send(lb, token, x.body, x.key))?.status ?? null));
    expect(retried.filter((status) => status !== 200)).toEqual([]);
    for (const x of failed) {
      const [{ n }] = await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records WHERE idempotency_key = $1", [x.key]);
      expect(Number(n)).toBe(1);
    }
    await until("HAProxy to mark the killed replica down", () => /claiim-3 is DOWN/.test(haproxyLog), 10_000);
  }, 120_000);
});
