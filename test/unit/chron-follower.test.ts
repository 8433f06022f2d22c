import { performance } from "node:perf_hooks";
import { ChronFollower } from "../../src/chron/follower";
import { ChronWriter } from "../../src/chron/chron-writer";
import type { ChronStore } from "../../src/chron/chron-store";
import { newEvent, type EventContent } from "../../src/chron/record";
import { ServiceUnavailableError } from "../../src/lib/errors";
import { createLogger } from "../../src/lib/logger";
import { SYSTEM } from "../../src/shared/principal";
import { FakeChronStore } from "../support/fakes/chron-store";
import { decisionContent } from "../support/decision-content";

const logger = createLogger("silent");
const event = (name: string) => newEvent({ type: "agent.suspended", actor: SYSTEM, subject: { type: "agent", id: name, name }, before: null, after: null });
const settings = { pollMs: 60_000, maxLagMs: 100 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One database (the fake store), this process (a follower and a writer through it) and another process (a writer of its own). */
function twoProcesses(store: ChronStore = new FakeChronStore()) {
  const applied: string[] = [];
  let failApply: Error | null = null;
  const follower = new ChronFollower(
    store,
    async (e: EventContent) => {
      if (failApply) throw failApply;
      applied.push(e.subject.name);
    },
    settings,
    logger,
  );
  const mine = new ChronWriter(follower.track(store), 100, logger);
  const theirs = new ChronWriter(store, 100, logger);
  return { store, follower, mine, theirs, applied, failWith: (err: Error | null) => (failApply = err) };
}

describe("ChronFollower: every process learns every change", () => {
  test("applies the other process's events in sequence order, skips its own and every decision, and starts from the head", async () => {
    const p = twoProcesses();
    await p.theirs.commit([event("before-start")]);
    await p.follower.from();
    await p.theirs.commit([event("t1"), event("t2")]);
    await p.mine.commit([event("m1")]);
    await p.theirs.commit([decisionContent(1)]);
    await p.theirs.commit([event("t3")]);
    await p.mine.commit([decisionContent(2)]);
    await p.follower.poll();
    expect(p.applied).toEqual(["t1", "t2", "t3"]);
    // Nothing twice, and nothing kept about its own events once passed.
    await p.follower.poll();
    expect(p.applied).toEqual(["t1", "t2", "t3"]);
    expect(p.follower.ownKept()).toEqual({ own: 0, passed: 0 });
  });

  test("behind, a request first makes the follower catch up: a stall of this process is no 503, a chain it cannot read is", async () => {
    const store = new FakeChronStore();
    const p = twoProcesses(store);
    await p.follower.from();
    await p.theirs.commit([event("during-the-stall")]);
    await sleep(settings.maxLagMs + 20);
    // The event loop was held past the bound (no poll ran): the request waits for one catch-up, then is answered.
    const caughtUp = p.follower.ensureFresh();
    expect(caughtUp).toBeInstanceOf(Promise);
    await caughtUp;
    expect(p.applied).toEqual(["during-the-stall"]);
    expect(p.follower.ensureFresh()).toBeUndefined();

    await sleep(settings.maxLagMs + 20);
    store.head = async () => {
      throw new Error("connect ECONNREFUSED");
    };
    await expect(p.follower.ensureFresh()).rejects.toMatchObject({ status: 503, code: "state_stale" });
  });

  test("an event that does not apply is tried again, and meanwhile this process answers 503 state_stale", async () => {
    const p = twoProcesses();
    await p.follower.from();
    p.follower.check();
    await p.theirs.commit([event("t1")]);
    p.failWith(new Error("database gone"));
    await p.follower.poll();
    await sleep(settings.maxLagMs + 20);
    expect(() => p.follower.check()).toThrow(ServiceUnavailableError);
    try {
      p.follower.check();
    } catch (err) {
      expect(err).toMatchObject({ status: 503, code: "state_stale" });
      expect((err as Error).message).toMatch(/database gone/);
    }
    expect(p.follower.problem()).toMatch(/has not applied the changes/);
    p.failWith(null);
    await p.follower.poll();
    expect(p.applied).toEqual(["t1"]);
    expect(() => p.follower.check()).not.toThrow();
    expect(p.follower.problem()).toBeNull();
  });

  test("a chain that cannot be read makes this process stale, not wrong", async () => {
    const store = new FakeChronStore();
    const p = twoProcesses(store);
    await p.follower.from();
    const head = store.head.bind(store);
    store.head = async () => {
      throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    };
    await p.follower.poll();
    expect(() => p.follower.check(performance.now() + settings.maxLagMs + 50)).toThrow(/ECONNREFUSED/);
    store.head = head;
    await p.follower.poll();
    expect(() => p.follower.check()).not.toThrow();
  });

  test("an own event whose commit is reported failed but went through is applied after all, whether the follower saw it first or not", async () => {
    const store = new FakeChronStore();
    let follower!: ChronFollower;
    let pollFirst = false;
    // The database commits, and the answer is lost on its way back.
    const lossy: ChronStore = new Proxy(store, {
      get: (target, prop, receiver) =>
        prop === "append"
          ? async (...args: Parameters<ChronStore["append"]>) => {
              await store.append(...args);
              if (pollFirst) await follower.poll();
              throw Object.assign(new Error("Connection terminated unexpectedly"), { code: "ECONNRESET" });
            }
          : Reflect.get(target, prop, receiver),
    });
    const applied: string[] = [];
    follower = new ChronFollower(store, async (e) => void applied.push(e.subject.name), settings, logger);
    const mine = new ChronWriter(follower.track(lossy), 100, logger);
    await follower.from();

    await expect(mine.commit([event("reported-failed")])).rejects.toThrow(/terminated/);
    await follower.poll();
    expect(applied).toEqual(["reported-failed"]);

    pollFirst = true;
    await expect(mine.commit([event("seen-then-failed")])).rejects.toThrow(/terminated/);
    await sleep(0);
    expect(applied).toEqual(["reported-failed", "seen-then-failed"]);
    expect(follower.ownKept()).toEqual({ own: 0, passed: 0 });
  });

  test("until it has begun, and after it stopped, it refuses nothing", async () => {
    const p = twoProcesses();
    expect(() => p.follower.check(performance.now() + 10_000)).not.toThrow();
    await p.follower.from();
    expect(() => p.follower.check(performance.now() + 10_000)).toThrow(/state|stale|applied/);
    await p.follower.stop();
    expect(() => p.follower.check(performance.now() + 10_000)).not.toThrow();
  });
});
