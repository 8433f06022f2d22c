import type { DecisionContent } from "../../src/chron/record";
import type { AgentContext } from "../../src/identity/identity-service";
import { createLogger } from "../../src/lib/logger";
import type { ActivePolicy } from "../../src/policy/policy-engine";
import { ReplayRunner, type ReplaySettings } from "../../src/policy/replay";
import { LiveWork } from "../../src/lib/pacer";
import { fakeChron, TESTER } from "../support/recorder";
import { outcomeOf } from "../support/pool";
import { policyInput } from "../../src/policy/decision-policy";
import { LeaseSlots } from "../../src/db/lease";
import { FakeLeaseStore } from "../support/fakes/lease-store";

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

async function harness(contents: DecisionContent[], settings: Partial<ReplaySettings> = {}, live = new LiveWork(), costMs = 0, slots: LeaseSlots | null = null) {
  const chron = fakeChron();
  for (const c of contents) await chron.writer.append(c);
  const runner = new ReplayRunner(chron.store, async (v) => policy(v, "production", costMs), chron.record, live, createLogger("silent"), settings, undefined, null, slots);
  const window = { version: 2, fromMs: now.getTime() - 1000, toMs: now.getTime() + 1000, orgId: null, maxRecords: 10 };
  const finished = async (id: string, orgId: string | null = null) => {
    while (runner.get(id, orgId).state === "running") await new Promise((r) => setImmediate(r));
    return runner.get(id, orgId);
  };
  return { runner, window, finished, chron };
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
    expect(() => runner.get(mine.id, "o-1")).toThrow(expect.objectContaining({ code: "replay_not_found" }));
    expect(runner.list("o-1")).toEqual([]);
    expect(runner.list(null)).toHaveLength(1);
  });

  test("it yields to other work between slices, and refuses to start beyond the running limit", async () => {
    const many = Array.from({ length: 50 }, () => decision("o-1", "staging"));
    const { runner, window, finished } = await harness(many, { sliceMs: 0, maxRunning: 1 });
    const job = await runner.start(window, TESTER);
    await new Promise((r) => setImmediate(r));
    const midway = runner.get(job.id, null);
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
    const underLoad = runner.get(job.id, null).progress.processed;
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
});
