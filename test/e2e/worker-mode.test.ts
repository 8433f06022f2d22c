// Worker mode (CLAIIM_WORKERS): a primary and its serving processes on one port, as `make run`
// starts them, on each database. Which worker answered a request is read from its log: every line
// a worker writes carries its number, and the access log line carries the request's id, which the
// test chooses (X-Request-Id). Each request goes on a fresh connection, which the primary hands to
// the workers in turn.
import http from "node:http";
import { startClaiimProcess, type ClaiimProcess } from "../support/process";
import { databaseKinds } from "../support/databases";
import { sql } from "../support/sql";
import { until } from "../support/until";
import { careless } from "../support/policies";
import { MadeUpLog } from "../support/witnessed-heads";

const WORKERS = 3;
const skill = { name: "deploy", version: "1.2.0" };
const allowed = { action: "deploy", resource: "staging", purpose: "worker mode", skill };
const denied = { action: "delete_environment", resource: "staging", purpose: "worker mode", skill };
const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/** One request; `agent` false: on a connection of its own, closed after it. */
function send(base: string, method: string, path: string, headers: Record<string, string>, body?: unknown, agent: http.Agent | false = false): Promise<Answer> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method, agent, headers: { ...headers, ...(payload ? { "Content-Type": "application/json" } : {}) } }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: /^application\/([a-z.+-]+\+)?json$/.test(String(res.headers["content-type"]).split(";")[0].trim()) ? (JSON.parse(text) as Record<string, unknown>) : { text } }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(payload);
  });
}

/** The worker (1..WORKERS) whose access log line names this request id. */
function answeredBy(c: ClaiimProcess, requestId: string): number | undefined {
  return c.logs().find((l) => l.message === "request" && l.request_id === requestId)?.worker as number | undefined;
}

/** The pid each worker slot runs as now (the last one that said it listens). */
function workerPids(c: ClaiimProcess): Map<number, number> {
  const pids = new Map<number, number>();
  for (const l of c.logs()) if (l.message === "CLAIIM listening" && typeof l.worker === "number") pids.set(l.worker, l.pid as number);
  return pids;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function metric(c: ClaiimProcess, admin: string, name: string): Promise<number> {
  const text = (await send(c.url, "GET", "/metrics", bearer(admin))).body.text as string;
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))].reduce((n, m) => n + Number(m[1]), 0);
}

async function decisionRecords(c: ClaiimProcess): Promise<{ ids: Set<string>; seqs: number[] }> {
  const rows = await sql(c.db, "SELECT id, seq, kind FROM chron_records ORDER BY seq");
  return { ids: new Set(rows.filter((r) => r.kind === "decision").map((r) => r.id as string)), seqs: rows.map((r) => Number(r.seq)) };
}

describe.each(databaseKinds())("worker mode on %s", (kind) => {
  let c: ClaiimProcess;
  let admin: string;
  let token: string;
  let agentId: string;
  let n = 0;
  const decide = (body: unknown, agent: http.Agent | false = false) => {
    const id = `wm-${kind}-${++n}`;
    return send(c.url, "POST", "/v1/decisions", { ...bearer(token), "X-Request-Id": id }, body, agent).then((a) => ({ ...a, requestId: id }));
  };

  beforeAll(async () => {
    c = await startClaiimProcess(kind, { CLAIIM_WORKERS: String(WORKERS), LOG_LEVEL: "http", CLAIIM_SHUTDOWN_TIMEOUT_SECONDS: "10", CLAIIM_SHUTDOWN_DELAY_SECONDS: "1" });
    admin = c.admin;
    await c.http.post("/v1/organizations").set(bearer(admin)).send({ slug: "acme", name: "Acme" }).expect(201);
    await c.http.post("/v1/humans").set(bearer(admin)).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
    agentId = (await c.http.post("/v1/agents").set(bearer(admin)).send({ organization: "acme", name: "deploy-bot", owner: "alice@acme.example", skills: [skill] }).expect(201)).body.id;
    token = (await c.http.post(`/v1/agents/${agentId}/credentials`).set(bearer(admin)).send({}).expect(201)).body.token;
    await until("every worker to listen", async () => (await metric(c, admin, "claiim_workers_listening")) === WORKERS, 90_000);
  }, 180_000);

  afterAll(async () => {
    await c?.stop();
  });

  test("the start-up work ran once, in the primary, before any worker: one bootstrap credential, one published policy, one whole-chain verification", async () => {
    const logs = c.logs();
    const primary = logs.filter((l) => l.worker === "primary");
    expect(primary.filter((l) => l.message === "Chron verified at start-up")).toHaveLength(1);
    expect(logs.filter((l) => l.message === "Chron verified at start-up" && l.worker !== "primary")).toEqual([]);
    // The first workers went on from the primary's verification.
    expect(logs.filter((l) => l.message === "Chron verified at start-up by the primary; going on from its head").map((l) => l.worker).sort()).toEqual([1, 2, 3]);
    expect(logs.filter((l) => l.message === "reference policies published and activated").map((l) => l.worker)).toEqual(["primary"]);
    const startedWork = logs.findIndex((l) => l.message === "reference policies published and activated");
    const firstWorkerLine = logs.findIndex((l) => typeof l.worker === "number");
    expect(startedWork).toBeLessThan(firstWorkerLine);
    expect(await sql(c.db, "SELECT action FROM chron_records WHERE action = 'api_key.created'")).toHaveLength(1);
    expect(await sql(c.db, "SELECT action FROM chron_records WHERE action = 'policy.published'")).toHaveLength(1);
  });

  test("decisions are answered by every worker, into one gapless chain that verifies; /metrics sums the workers", async () => {
    const answers: (Answer & { requestId: string })[] = [];
    for (let i = 0; i < 8 * WORKERS; i++) answers.push(await decide(i % 2 ? denied : allowed));
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    expect(answers.map((a) => a.body.decision)).toEqual(answers.map((_, i) => (i % 2 ? "deny" : "allow")));
    await until("every access log line", () => answers.every((a) => answeredBy(c, a.requestId) !== undefined), 5000);
    expect(new Set(answers.map((a) => answeredBy(c, a.requestId)))).toEqual(new Set([1, 2, 3]));

    const { ids, seqs } = await decisionRecords(c);
    expect(answers.filter((a) => !ids.has(a.body.decision_id as string))).toEqual([]);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    const verify = await send(c.url, "GET", "/v1/chron/verify", bearer(admin));
    expect(verify.body).toMatchObject({ valid: true, checked: seqs.length });
    // Each worker counts the decisions it committed; a scrape, wherever it lands, sums them all.
    expect(await metric(c, admin, "claiim_decisions_total")).toBe(ids.size);
    expect(await metric(c, admin, "claiim_workers_listening")).toBe(WORKERS);
  }, 60_000);

  test("a suspension through one worker is in force on every worker once it is answered: the next decision on each is a deny", async () => {
    const suspended = await send(c.url, "POST", `/v1/agents/${agentId}/suspend`, bearer(admin), { reason: "kill switch" });
    expect(suspended.status).toBe(200);
    // No waiting: the suspension was answered once every worker had applied it, so the first answer
    // of each worker after it is a deny, and every one after.
    const answers: (Answer & { requestId: string })[] = [];
    for (let i = 0; i < 6 * WORKERS; i++) answers.push(await decide(allowed));
    expect(answers.map((a) => [a.status, a.body.decision])).toEqual(answers.map(() => [200, "deny"]));
    expect(answers[0].body.reasons).toEqual(['agent "deploy-bot" is suspended, not active']);
    await until("every access log line", () => answers.every((a) => answeredBy(c, a.requestId) !== undefined), 5000);
    expect(new Set(answers.map((a) => answeredBy(c, a.requestId)))).toEqual(new Set([1, 2, 3]));
    // The kill switch is one event in Chron, and each deny a decision record.
    const events = await sql(c.db, "SELECT id FROM chron_records WHERE action = 'agent.suspended'");
    expect(events).toHaveLength(1);
    const { ids } = await decisionRecords(c);
    expect(answers.filter((a) => !ids.has(a.body.decision_id as string))).toEqual([]);
    await send(c.url, "POST", `/v1/agents/${agentId}/reactivate`, bearer(admin), { reason: "test over" }).then((r) => expect(r.status).toBe(200));
    const after: Answer[] = [];
    for (let i = 0; i < 2 * WORKERS; i++) after.push(await decide(allowed));
    expect(after.map((a) => a.body.decision)).toEqual(after.map(() => "allow"));
  }, 60_000);

  test("as the witness of another CLAIIM, the workers hold one log: heads posted to different workers extend it, and a fork shown to a third is refused", async () => {
    const key = (await c.http.post("/v1/api-keys").set(bearer(admin)).send({ name: `origin-${kind}`, role: "witness" }).expect(201)).body;
    const log = new MadeUpLog();
    const heads = [log.head(10, null), log.head(20, 10)];
    // The origin shows the other branch of a fork at 20 records to another worker.
    const fork = log.fork(10).head(20, 10);
    const post = (head: unknown, i: number) => send(c.url, "POST", "/v1/witness/heads", { ...bearer(key.secret), "X-Request-Id": `wm-witness-${kind}-${i}` }, head);
    // Each on a new connection, which the cluster hands to the workers in turn.
    const answers = [await post(heads[0], 0), await post(heads[1], 1), await post(fork, 2)];
    expect(answers.map((a) => a.status)).toEqual([200, 200, 409]);
    expect(answers[2].body).toMatchObject({ code: "witness_head_not_extending", tree_size: 20, root: heads[1].root });
    await until("every access log line", () => answers.every((_, i) => answeredBy(c, `wm-witness-${kind}-${i}`) !== undefined), 5000);
    expect(new Set(answers.map((_, i) => answeredBy(c, `wm-witness-${kind}-${i}`))).size).toBe(WORKERS);
    // Every worker reads the same log back.
    const reads: Answer[] = [];
    for (let i = 0; i < WORKERS; i++) reads.push(await send(c.url, "GET", "/v1/witness/heads", bearer(key.secret)));
    expect(reads.map((r) => (r.body.text as string).trim().split("\n").map((l) => JSON.parse(l).root))).toEqual(reads.map(() => [heads[0].root, heads[1].root]));
  });

  test("a retry with the same Idempotency-Key that lands on another worker gets the first answer, recorded once", async () => {
    const key = `wm-retry-${kind}`;
    const answers: Answer[] = [];
    // Each on a new connection, which the cluster hands to the workers in turn.
    for (let i = 0; i < 2 * WORKERS; i++) answers.push(await send(c.url, "POST", "/v1/decisions", { ...bearer(token), "Idempotency-Key": key }, allowed));
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    expect(new Set(answers.map((a) => a.body.decision_id)).size).toBe(1);
    expect(answers.filter((a) => a.headers["idempotent-replayed"] === "true")).toHaveLength(2 * WORKERS - 1);
    const [{ n }] = await sql(c.db, "SELECT COUNT(*) AS n FROM chron_records WHERE agent_id = $1 AND idempotency_key = $2", [agentId, key]);
    expect(Number(n)).toBe(1);
  });

  test("a replay runs in the worker asked to start it, and every worker shows it: by id and in the list", async () => {
    const started = await send(c.url, "POST", "/v1/policies/1/replay", bearer(admin), { from: new Date(Date.now() - 3600_000).toISOString() });
    expect(started.status).toBe(202);
    const id = started.body.id as string;
    // Each read on a new connection, which the cluster hands to the workers in turn.
    const reads: Answer[] = [];
    for (let i = 0; i < 2 * WORKERS; i++) reads.push(await send(c.url, "GET", `/v1/policies/replays/${id}`, bearer(admin)));
    expect(reads.map((r) => [r.status, r.body.id])).toEqual(reads.map(() => [200, id]));
    const lists: Answer[] = [];
    for (let i = 0; i < 2 * WORKERS; i++) lists.push(await send(c.url, "GET", "/v1/policies/replays", bearer(admin)));
    expect(lists.map((l) => (l.body.replays as { id: string }[]).filter((r) => r.id === id).length)).toEqual(lists.map(() => 1));
    // A replay nobody runs is still 404 everywhere.
    const unknown = await send(c.url, "GET", "/v1/policies/replays/00000000-0000-4000-8000-000000000000", bearer(admin));
    expect([unknown.status, unknown.body.code]).toEqual([404, "replay_not_found"]);
  });

  test("the limit on running replays holds for every process on the database: slots held elsewhere refuse a replay on every worker; free, one starts and hands its slot back", async () => {
    const from = new Date(Date.now() - 3600_000).toISOString();
    // Two replays running in another process (a replica): their slots, held and unexpired.
    for (const slot of ["replay-1", "replay-2"]) {
      await sql(c.db, "INSERT INTO leases (name, holder, expires_ms, term) VALUES ($1, $2, $3, 1) ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms", [slot, `elsewhere/1/${slot}`, Date.now() + 600_000]);
    }
    const refused: Answer[] = [];
    for (let i = 0; i < WORKERS; i++) refused.push(await send(c.url, "POST", "/v1/policies/1/replay", bearer(admin), { from }));
    expect(refused.map((r) => [r.status, r.body.code])).toEqual(refused.map(() => [409, "replays_busy"]));
    // That process ends one of them: a replay starts here, in the slot it handed back.
    await sql(c.db, "UPDATE leases SET expires_ms = 0 WHERE name = 'replay-2'");
    const started = await send(c.url, "POST", "/v1/policies/1/replay", bearer(admin), { from });
    expect(started.status).toBe(202);
    const [held] = await sql(c.db, "SELECT holder FROM leases WHERE name = 'replay-2'");
    expect(String(held.holder)).not.toMatch(/^elsewhere/);
    await until("the replay to finish", async () => (await send(c.url, "GET", `/v1/policies/replays/${started.body.id as string}`, bearer(admin))).body.state === "done", 10_000);
    await until("its slot to be handed back", async () => Number((await sql(c.db, "SELECT expires_ms FROM leases WHERE name = 'replay-2'"))[0].expires_ms) === 0, 5_000);
    await sql(c.db, "UPDATE leases SET expires_ms = 0 WHERE name = 'replay-1'");
  });

  test("a shadow that keeps exceeding the deadline is stopped at the same count with three workers as with one: trips are counted for all of them, and one worker stops it", async () => {
    const reference = (await c.http.get("/v1/policies/1").set(bearer(admin)).expect(200)).body.files as Record<string, string>;
    const { version } = (await c.http.post("/v1/policies").set(bearer(admin)).send({ files: careless(reference, 'input.request.resource == "shadowed"'), message: "careless shadow" }).expect(201)).body;
    // Answered once every worker evaluates it.
    await c.http.put("/v1/policies/shadow").set(bearer(admin)).send({ version }).expect(200);
    const answers: (Answer & { requestId: string })[] = [];
    for (let i = 0; i < 3; i++) answers.push(await decide({ ...allowed, resource: "shadowed" }));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    await until("every access log line", () => answers.every((a) => answeredBy(c, a.requestId) !== undefined), 5000);
    // Each worker tripped once (a count per process would never reach 3).
    expect(new Set(answers.map((a) => answeredBy(c, a.requestId))).size).toBe(WORKERS);
    await until("the shadow to be stopped", async () => (await c.http.get("/v1/policies/status").set(bearer(admin)).expect(200)).body.shadow === null, 15_000);
    const stopped = (await sql(c.db, "SELECT content FROM chron_records WHERE action = 'policy.shadow_stopped'")).map((r) => JSON.parse(r.content as string));
    expect(stopped).toEqual([expect.objectContaining({ actor: expect.objectContaining({ id: "evaluation-bounds" }), subject: expect.objectContaining({ id: String(version) }), after: { shadow_version: null, bounds_exceeded: 3 } })]);
    expect((await c.http.get("/v1/policies/status").set(bearer(admin)).expect(200)).body.errors[0].message).toMatch(new RegExp(`^shadow policy version ${version} stopped: 3 of its evaluations`));
  }, 60_000);

  test("kill -9 of one worker under load (the Chron coordinator): the others keep answering, the primary starts another, no acknowledged decision is missing, the chain verifies on every worker", async () => {
    // The coordinator (it signs the tree heads into its witness log): its lease moves to another worker.
    const [lease] = await sql(c.db, "SELECT holder FROM leases WHERE name = 'chron-coordinator' AND expires_ms > $1", [Date.now()]);
    const victim = Number(String(lease.holder).split("/")[1]);
    const victimSlot = [...workerPids(c)].find(([, pid]) => pid === victim)![0];
    expect(alive(victim)).toBe(true);
    const acknowledged: { id: string; at: number }[] = [];
    let failed = 0;
    let done = false;
    // Eight clients, each on its own kept-alive connection (a dead worker's connection is replaced by a new one).
    const client = async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      for (let i = 0; !done; i++) {
        const a = await decide(i % 2 ? denied : allowed, agent).catch(() => null);
        if (a?.status === 200) acknowledged.push({ id: a.body.decision_id as string, at: Date.now() });
        else {
          failed += 1;
          await sleep(20);
        }
      }
      agent.destroy();
    };
    const load = Promise.all(Array.from({ length: 8 }, client));
    await until("some load", () => acknowledged.length >= 50, 30_000);
    const killedAt = Date.now();
    process.kill(victim, "SIGKILL");
    await until("the victim to be gone", () => !alive(victim), 5000);
    const restarted = await until("the primary to start another worker", () => {
      const pid = workerPids(c).get(victimSlot);
      return pid !== undefined && pid !== victim ? pid : undefined;
    }, 90_000);
    const restartedAt = Date.now();
    await sleep(1000);
    done = true;
    await load;

    // The others kept answering while it was gone.
    expect(acknowledged.filter((a) => a.at > killedAt + 200 && a.at < restartedAt).length).toBeGreaterThan(0);
    const died = c.errors().find((l) => l.message === "CLAIIM worker died; the primary starts another");
    expect(died).toMatchObject({ worker: "primary", died: victimSlot, died_pid: victim, signal: "SIGKILL" });
    expect(alive(restarted)).toBe(true);
    // The replacement verified the chain whole itself: the primary's word was for the first workers.
    expect(c.logs().some((l) => l.message === "Chron verified at start-up" && l.pid === restarted)).toBe(true);
    await until("every worker to listen again", async () => (await metric(c, admin, "claiim_workers_listening")) === WORKERS, 30_000);
    expect(await metric(c, admin, "claiim_worker_restarts_total")).toBe(1);

    const { ids, seqs } = await decisionRecords(c);
    expect(acknowledged.filter((a) => !ids.has(a.id))).toEqual([]);
    expect(new Set(acknowledged.map((a) => a.id)).size).toBe(acknowledged.length);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    // Each worker verifies against its own witness log: the new coordinator's heads extend the ones it knew.
    await until("the new coordinator to sign the last records", async () => Number((await sql(c.db, "SELECT MAX(seq) AS seq FROM chron_checkpoints"))[0].seq) === seqs.length, 15_000);
    const verifiedBy = new Set<number | undefined>();
    for (let i = 0; i < 2 * WORKERS; i++) {
      const requestId = `wm-verify-${kind}-${i}`;
      const verify = await send(c.url, "GET", "/v1/chron/verify", { ...bearer(admin), "X-Request-Id": requestId });
      expect(verify.body.problems).toEqual([]);
      expect(verify.body).toMatchObject({ valid: true, checked: seqs.length });
      verifiedBy.add(await until("its access log line", () => answeredBy(c, requestId), 5000));
    }
    expect(verifiedBy).toEqual(new Set([1, 2, 3]));
    // Only requests in flight on the killed worker's connections can have failed.
    expect(failed).toBeLessThanOrEqual(8 * 3);
  }, 180_000);

  test("SIGTERM to the primary: every worker's readiness answers 503 first, then all stop within the bound, the primary's line last", async () => {
    const pids = [...workerPids(c).values()];
    const started = Date.now();
    c.child.kill("SIGTERM");
    // The stop reaches the workers from the primary over IPC, a moment after the signal (a probe
    // sent at once may still find one ready); then, during the shutdown delay (1 s), every worker
    // still serves, and says it is not ready.
    await until("a worker to say it is not ready", async () => (await send(c.url, "GET", "/readyz", {}).catch(() => null))?.status === 503, 800);
    await sleep(100);
    const ready: Answer[] = [];
    for (let i = 0; i < WORKERS * 2 && Date.now() - started < 900; i++) ready.push(await send(c.url, "GET", "/readyz", {}).catch(() => ({ status: 0, headers: {}, body: {} })));
    expect(ready.filter((r) => r.status === 200)).toEqual([]);
    const exit = await c.exited;
    const ms = Date.now() - started;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(ms).toBeLessThan(10_000 + 3_000);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    const logs = c.logs();
    for (const pid of pids) {
      const mine = logs.filter((l) => l.pid === pid).map((l) => l.message);
      expect(mine.indexOf("stopping: readiness now answers 503; requests in flight and Chron commits get CLAIIM_SHUTDOWN_TIMEOUT_SECONDS to finish")).toBeGreaterThanOrEqual(0);
      expect(mine[mine.length - 1]).toBe("CLAIIM stopped");
    }
    expect(logs[logs.length - 1]).toMatchObject({ message: "CLAIIM stopped", worker: "primary", workers: WORKERS });
  }, 60_000);

  test("kill -9 of the primary: its workers notice the closed channel and exit", async () => {
    const d = await startClaiimProcess(kind, { CLAIIM_WORKERS: "2", LOG_LEVEL: "info" });
    try {
      await until("both workers to listen", () => workerPids(d).size === 2, 90_000);
      const pids = [...workerPids(d).values()];
      d.child.kill("SIGKILL");
      await d.exited;
      await until("the workers to exit", () => pids.every((pid) => !alive(pid)), 10_000);
      await until("their last lines", () => d.errors().filter((l) => l.message === "the worker mode primary is gone (its IPC channel closed): this worker exits now").length === 2, 2000);
      expect(d.errors().filter((l) => l.message === "the worker mode primary is gone (its IPC channel closed): this worker exits now").map((l) => l.pid).sort()).toEqual([...pids].sort());
    } finally {
      await d.stop();
    }
  }, 180_000);
});
