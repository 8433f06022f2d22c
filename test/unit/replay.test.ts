import type { DecisionContent } from "../../src/chron/record";
import type { AgentContext } from "../../src/identity/identity-service";
import { createLogger } from "../../src/lib/logger";
import type { ActivePolicy } from "../../src/policy/policy-engine";
import { ReplayRunner, type ReplaySettings, type ReplayView } from "../../src/policy/replay";
import { LiveWork } from "../../src/lib/pacer";
import { fakeChron, TESTER } from "../support/recorder";
import { outcomeOf } from "../support/pool";
import { policyInput } from "../../src/policy/decision-policy";
import { LeaseSlots } from "../../src/db/lease";
import { FakeLeaseStore } from "../support/fakes/lease-store";
import { FakeReplayStore } from "../support/fakes/replay-store";

const now = new Date();

function context(org: string): AgentContext {
  return {
    agent: { id: `a-${org}`, orgId: org, name: `bot-${org}`, description: "", ownerId: "h-1", status: "active", statusReason: null, createdAt: now, updatedAt: now, skills: [{ name: "deploy", version: "1.2.0", registeredAt: now }] },
    organization: { id: org, slug: org, name: org, createdAt: now },
    owner: { id: "h-1", orgId: org, name: "Alice", email: "alice@x", status: "active", createdAt: now },
  };
}

function policy(version: number, allowed: string, costMs = 0): ActivePolicy {
  return {
    version,
    revision: `${version}-sha256:x`,
    digest: "sha256:x",
    activatedAt: now,
    signedBy: "kid",
    data: {},
    evaluate: async (input) =>
      outcomeOf(() => {
        for (const end = performance.now() + costMs; performance.now() < end; );
        const ok = (input as { request: { resource: string } }).request.resource === allowed;
        return { allow: ok, reasons: ok ? [] : [`only ${allowed}`] };
      }),
  };
}

function decision(org: string, resource: string, over: Partial<DecisionContent> = {}): DecisionContent {
  const ctx = context(org);
  const input = policyInput(ctx, { action: "deploy", resource, purpose: "p", skill: { name: "deploy", version: "1.2.0" } });
  return {
    kind: "decision",
    decision_id: `d-${Math.random()}`,
    timestamp: now.toISOString(),
    path: "claiim/decision",
    organization: { id: org, slug: org },
    agent: { id: ctx.agent.id, name: ctx.agent.name, status: "active" },
    accountable_human: input.accountable_human,
    on_behalf_of: null,
    requested_by: { credential_id: "c" },
    action: "deploy",
    resource,
    purpose: "p",
    skill: { name: "deploy", version: "1.2.0" },
    decision: resource === "staging" ? "allow" : "deny",
    reasons: [],
    policy: { version: 1, revision: "1-sha256:x", digest: "sha256:x" },
    bundles: {},
    input,
    ...over,
  };
}

async function harness(contents: DecisionContent[], settings: Partial<ReplaySettings> = {}, live = new LiveWork(), costMs = 0, slots: LeaseSlots | null = null, store = new FakeReplayStore()) {
  const chron = fakeChron();
  for (const c of contents) await chron.writer.append(c);
  const runner = new ReplayRunner(chron.store, async (v) => policy(v, "production", costMs), chron.record, live, createLogger("silent"), settings, undefined, store, slots);
  const window = { version: 2, fromMs: now.getTime() - 1000, toMs: now.getTime() + 1000, orgId: null, maxRecords: 10 };
  const finished = async (id: string, orgId: string | null = null) => {
    while ((await runner.find(id, orgId)).state === "running") await new Promise((r) => setImmediate(r));
    return runner.find(id, orgId);
  };
  return { runner, window, finished, chron, store };
}

/** Every one of `n` records flipped, each found once, in the order of the chain (the order the replay reads them). */
function allFound(view: ReplayView, n: number): void {
  expect(view).toMatchObject({ state: "done", error: null, progress: { processed: n, total: n }, allow_to_deny: { count: n } });
  const seqs = view.allow_to_deny.records.map((r) => r.seq);
  expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
  expect(new Set(seqs).size).toBe(n);
}

/** A second process on the same database: its own runner (and Chron, unused), the same replay store. */
function elsewhere(store: FakeReplayStore, settings: Partial<ReplaySettings> = {}) {
  const chron = fakeChron();
  return new ReplayRunner(chron.store, async (v) => policy(v, "production"), chron.record, new LiveWork(), createLogger("silent"), settings, undefined, store, null);
}

describe("ReplayRunner", () => {
  test("counts flips both ways, skips records without input, and flags those whose input was redacted", async () => {
    const { runner, window, finished, chron } = await harness([
      decision("o-1", "staging"),
      decision("o-1", "production"),
      decision("o-1", "staging", { input: null }),
      decision("o-1", "staging", { erased: ["/input/request/purpose"] }),
      decision("o-1", "production", { decision: "allow" }),
    ]);
    const job = await finished((await runner.start(window, TESTER)).id);
    expect(job).toMatchObject({ state: "done", progress: { processed: 5, total: 5 }, skipped: 1, redacted: 1, unchanged: 1, truncated: false, error: null });
    expect(job.allow_to_deny.count).toBe(2);
    expect(chron.events()).toEqual([expect.objectContaining({ type: "policy.replay_started", actor: TESTER, subject: expect.objectContaining({ id: job.id }), after: expect.objectContaining({ version: 2, decisions: 5 }) })]);
    expect(job.allow_to_deny.records.map((r) => r.redacted)).toEqual([false, true]);
    expect(job.deny_to_allow.records).toEqual([expect.objectContaining({ resource: "production", recorded: expect.objectContaining({ decision: "deny" }), replayed: { decision: "allow", reasons: [] } })]);
  });

  test("a caller confined to an organisation replays its own decisions and sees only its own replays", async () => {
    const { runner, window, finished } = await harness([decision("o-1", "staging"), decision("o-2", "staging"), decision("o-2", "staging")]);
    const mine = await finished((await runner.start({ ...window, orgId: "o-2" }, TESTER)).id, "o-2");
    expect(mine.progress.total).toBe(2);
    await expect(runner.find(mine.id, "o-1")).rejects.toMatchObject({ code: "replay_not_found" });
    expect(await runner.list("o-1")).toEqual([]);
    expect(await runner.list(null)).toHaveLength(1);
  });

  test("it yields to other work between slices, and refuses to start beyond the running limit", async () => {
    const many = Array.from({ length: 50 }, () => decision("o-1", "staging"));
    const { runner, window, finished } = await harness(many, { sliceMs: 0, maxRunning: 1 });
    const job = await runner.start(window, TESTER);
    await new Promise((r) => setImmediate(r));
    const midway = await runner.find(job.id, null);
    expect(midway.state).toBe("running");
    expect(midway.progress.processed).toBeLessThan(50);
    await expect(runner.start(window, TESTER)).rejects.toMatchObject({ status: 409, code: "replays_busy" });
    expect((await finished(job.id)).allow_to_deny.count).toBe(50);
  });

  test("the running limit holds across processes: slots in the database, taken at start and handed back at the end", async () => {
    const leases = new FakeLeaseStore();
    const slotsOf = () => new LeaseSlots(leases, "replay", 1, 10_000, createLogger("silent"));
    const many = Array.from({ length: 50 }, () => decision("o-1", "staging"));
    // Two processes, each with its own runner, on one database.
    const a = await harness(many, { sliceMs: 0, maxRunning: 1 }, new LiveWork(), 0, slotsOf());
    const b = await harness(many, { sliceMs: 0, maxRunning: 1 }, new LiveWork(), 0, slotsOf());
    const job = await a.runner.start(a.window, TESTER);
    expect(leases.rows.get("replay-1")).toMatchObject({ expiresMs: expect.any(Number) });
    await expect(b.runner.start(b.window, TESTER)).rejects.toMatchObject({ status: 409, code: "replays_busy" });
    // Refused before anything was recorded.
    expect(b.chron.events()).toEqual([]);
    expect((await a.finished(job.id)).state).toBe("done");
    await new Promise((r) => setImmediate(r));
    expect(leases.rows.get("replay-1")!.expiresMs).toBe(0);
    const next = await b.runner.start(b.window, TESTER);
    expect((await b.finished(next.id)).state).toBe("done");
  });

  test("a replay whose slot could not be kept (the database unreachable) stops at its next step, and says why", async () => {
    const leases = new FakeLeaseStore();
    const many = Array.from({ length: 2000 }, () => decision("o-1", "staging"));
    const { runner, window, finished } = await harness(many, { sliceMs: 1, busyShare: 0.01 }, new LiveWork(), 0.5, new LeaseSlots(leases, "replay", 1, 300, createLogger("silent")));
    const job = await runner.start(window, TESTER);
    leases.unreachable.add(leases.rows.get("replay-1")!.holder);
    const ended = await finished(job.id);
    expect(ended.state).toBe("failed");
    expect(ended.error).toMatch(/could not be kept/);
    expect(ended.progress.processed).toBeLessThan(2000);
  });

  test("while live decisions arrive it keeps to its share of the event loop, and goes flat out once they stop", async () => {
    const live = new LiveWork();
    // 2,000 records at 0.05 ms each: 100 ms of work, which at a 5% share would take 2 s.
    const many = Array.from({ length: 2000 }, () => decision("o-1", "staging"));
    const { runner, window, finished } = await harness(many, { sliceMs: 1, busyShare: 0.05 }, live, 0.05);
    const traffic = setInterval(() => (live.count += 1), 1);
    const job = await runner.start(window, TESTER);
    const loadStart = Date.now();
    await new Promise((r) => setTimeout(r, 150));
    const underLoad = (await runner.find(job.id, null)).progress.processed;
    const loadMs = Date.now() - loadStart;
    clearInterval(traffic);
    const idleStart = Date.now();
    await finished(job.id);
    const idleMs = Math.max(1, Date.now() - idleStart);
    expect(underLoad).toBeLessThan(1000);
    // Rates measured in the same run, so that a loaded machine slows both alike: flat out, the
    // replay goes at least three times faster than at its share (about twenty times when quiet).
    expect((2000 - underLoad) / idleMs).toBeGreaterThan((3 * Math.max(1, underLoad)) / loadMs);
  });

  describe("saved in the database, for every process on it", () => {
    // 300 records that would flip (allow to deny), replayed slowly enough to be saved many times.
    const flips = () => Array.from({ length: 300 }, () => decision("o-1", "staging"));

    /** A replay of the 300 flips held to its share by live traffic (300 records at 0.2 ms: about a second), saved every `saveEveryMs`; `quiet()` ends the traffic. */
    async function paced(saveEveryMs: number) {
      const live = new LiveWork();
      const traffic = setInterval(() => (live.count += 1), 1);
      const a = await harness(flips(), { sliceMs: 1, busyShare: 0.05, saveEveryMs, chunk: 4 }, live, 0.2);
      const started = await a.runner.start({ ...a.window, maxRecords: 1000 }, TESTER);
      return { ...a, started, quiet: () => clearInterval(traffic) };
    }

    /** Until the store holds some of the replay's records. */
    async function someSaved(a: { store: FakeReplayStore }, id: string): Promise<void> {
      while ((a.store.changes.get(id) ?? []).length === 0) await new Promise((r) => setTimeout(r, 1));
    }

    test("another process answers for a replay while it runs and once it ended, with every record found, in order, each once", async () => {
      const a = await paced(5);
      const { started } = a;
      const b = elsewhere(a.store);
      // Saved as it starts: the other process finds it at once.
      expect(await b.find(started.id, null)).toMatchObject({ id: started.id, state: "running", progress: { total: 300 } });
      let midway = await b.find(started.id, null);
      while (midway.progress.processed === 0) {
        await new Promise((r) => setTimeout(r, 5));
        midway = await b.find(started.id, null);
      }
      a.quiet();
      const here = await a.runner.find(started.id, null);
      expect(midway.state).toBe("running");
      // As saved: behind this process's own view at most, and its records those counted.
      expect(midway.progress.processed).toBeLessThanOrEqual(here.progress.processed);
      expect(midway.allow_to_deny.records).toHaveLength(midway.allow_to_deny.count);
      const done = await a.finished(started.id);
      allFound(done, 300);
      expect(await b.find(started.id, null)).toEqual(done);
      expect(a.store.saves).toBeGreaterThan(3);
      // A caller of another organisation does not see it there either.
      await expect(b.find(started.id, "o-2")).rejects.toMatchObject({ status: 404, code: "replay_not_found" });
      // After a restart (a new runner on the same database), it is still there.
      expect(await elsewhere(a.store).list(null)).toEqual([done]);
    });

    test("a save that fails is carried by the next one: nothing found is lost or doubled", async () => {
      const a = await paced(2);
      const { started } = a;
      // Once some records are saved, the database goes away for two saves, then comes back.
      await someSaved(a, started.id);
      a.store.unreachable = true;
      while (a.store.refused < 2) await new Promise((r) => setTimeout(r, 1));
      a.store.unreachable = false;
      expect((await a.runner.find(started.id, null)).state).toBe("running");
      a.quiet();
      const done = await a.finished(started.id);
      expect(done.state).toBe("done");
      const saved = await elsewhere(a.store).find(started.id, null);
      expect(saved).toEqual(done);
      allFound(saved, 300);
    });

    test("a save that committed although its caller saw it fail is carried again without doubling a record", async () => {
      const a = await paced(2);
      const { started } = a;
      await someSaved(a, started.id);
      a.store.loseNextCommit = true;
      while (a.store.loseNextCommit) await new Promise((r) => setTimeout(r, 1));
      expect((await a.runner.find(started.id, null)).state).toBe("running");
      a.quiet();
      const done = await a.finished(started.id);
      expect(a.store.loseNextCommit).toBe(false);
      const saved = await elsewhere(a.store).find(started.id, null);
      expect(saved).toEqual(done);
      allFound(saved, 300);
    });

    test("a replay whose end could not be saved is answered by its own process as it ended, and by the others as last saved", async () => {
      const a = await harness(flips(), { saveEveryMs: 60_000 });
      const started = await a.runner.start(a.window, TESTER);
      a.store.unreachable = true;
      while ((await a.runner.find(started.id, null)).state === "running") await new Promise((r) => setImmediate(r));
      const here = await a.runner.find(started.id, null);
      expect(here).toMatchObject({ state: "done", allow_to_deny: { count: 300 } });
      a.store.unreachable = false;
      expect((await a.runner.list(null)).map((v) => v.state)).toEqual(["done"]);
      expect(await elsewhere(a.store).find(started.id, null)).toMatchObject({ state: "running", progress: { processed: 0 } });
    });

    test("a replay running as its process stops is saved as failed, saying so: the others need not wait for it to go stale", async () => {
      // 2,000 records at 0.5 ms each: a second of work, stopped after 20 ms.
      const a = await harness(Array.from({ length: 2000 }, () => decision("o-1", "staging")), { sliceMs: 1, busyShare: 0.05, chunk: 4 }, new LiveWork(), 0.5);
      const started = await a.runner.start({ ...a.window, maxRecords: 10_000 }, TESTER);
      await new Promise((r) => setTimeout(r, 20));
      await a.runner.stop();
      const seen = await elsewhere(a.store).find(started.id, null);
      expect(seen).toMatchObject({ state: "failed", error: "stopped: CLAIIM is stopping", finished_at: expect.any(String) });
      expect(seen.progress.processed).toBeGreaterThan(0);
      expect(seen.progress.processed).toBeLessThan(2000);
      expect(seen.allow_to_deny.records).toHaveLength(seen.allow_to_deny.count);
    });

    test("a replay is not started when it cannot be saved: refused, its slot handed back", async () => {
      const leases = new FakeLeaseStore();
      const a = await harness(flips(), {}, new LiveWork(), 0, new LeaseSlots(leases, "replay", 1, 10_000, createLogger("silent")));
      a.store.unreachable = true;
      await expect(a.runner.start(a.window, TESTER)).rejects.toMatchObject({ code: "ECONNREFUSED" });
      expect(leases.rows.get("replay-1")!.expiresMs).toBe(0);
      a.store.unreachable = false;
      expect(await a.runner.list(null)).toEqual([]);
    });

    test("a replay whose process stopped saving it is reported failed, saying since when; the ended ones are kept up to the limit", async () => {
      const a = await harness(flips(), { keepFinished: 2, staleMs: 200 });
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await a.finished((await a.runner.start(a.window, TESTER)).id)).id);
      // A replay whose process was killed as it ran: saved once, running, and never again.
      const dead = structuredClone(await a.runner.find(ids[2], null));
      Object.assign(dead, { id: "dead-one", state: "running", finished_at: null, started_at: new Date(Date.now() + 1000).toISOString() });
      const lastSaved = Date.now() - 500;
      await a.store.save(dead, []);
      a.store.rows.get("dead-one")!.updatedMs = lastSaved;
      const b = elsewhere(a.store, { keepFinished: 2, staleMs: 200 });
      expect(await b.find("dead-one", null)).toMatchObject({ state: "failed", finished_at: new Date(lastSaved).toISOString(), error: expect.stringMatching(/stopped without finishing.*has not saved it since/) });
      // Kept: the newest two that ended (the first was forgotten when the third ended).
      expect((await b.list(null)).map((v) => v.id)).toEqual(["dead-one", ids[2], ids[1]]);
      expect(await a.store.get(ids[0])).toBeNull();
      // The dead one counts as ended: the next replay to end leaves it and itself.
      const next = (await a.finished((await a.runner.start(a.window, TESTER)).id)).id;
      expect((await b.list(null)).map((v) => v.id)).toEqual(["dead-one", next]);
      // Not stale: a replay another process saved a moment ago still runs.
      await a.store.save({ ...dead, id: "alive" }, []);
      expect(await b.find("alive", null)).toMatchObject({ state: "running", error: null });
    });

    test("staleness is read on the database's clock: a process whose machine's clock is minutes off neither fails a replay that runs nor keeps one that stopped", async () => {
      const a = await harness(flips(), { staleMs: 200 });
      const view = structuredClone(await a.finished((await a.runner.start(a.window, TESTER)).id));
      await a.store.save({ ...view, id: "running-elsewhere", state: "running", finished_at: null }, []);
      await a.store.save({ ...view, id: "stopped-elsewhere", state: "running", finished_at: null }, []);
      a.store.rows.get("stopped-elsewhere")!.updatedMs -= 500;
      const b = elsewhere(a.store, { staleMs: 200 });
      for (const skewMs of [10 * 60_000, -10 * 60_000]) {
        const skewed = jest.spyOn(Date, "now").mockImplementation(() => a.store.clock() + skewMs);
        try {
          expect(await b.find("running-elsewhere", null)).toMatchObject({ state: "running", error: null });
          expect(await b.find("stopped-elsewhere", null)).toMatchObject({ state: "failed", error: expect.stringMatching(/has not saved it since/) });
          expect((await b.list(null)).map((v) => [v.id, v.state])).toEqual(expect.arrayContaining([["running-elsewhere", "running"], ["stopped-elsewhere", "failed"]]));
        } finally {
          skewed.mockRestore();
        }
      }
    });
  });
});
