import { Lease, LeaseSlots } from "../../src/db/lease";
import { FakeLeaseStore } from "../support/fakes/lease-store";
import { createLogger } from "../../src/lib/logger";

const logger = createLogger("silent");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Lease", () => {
  test("one holder at a time: the first acts, the other stands by; a holder cut off from the database stops acting before the other takes over", async () => {
    const store = new FakeLeaseStore();
    const heard: string[] = [];
    const a = new Lease(store, "coord", "a", 300, logger, (held) => void heard.push(`a:${held}`));
    const b = new Lease(store, "coord", "b", 300, logger, (held) => void heard.push(`b:${held}`));
    await a.start();
    await b.start();
    expect([a.holds(), b.holds()]).toEqual([true, false]);
    store.unreachable.add("a");
    const cut = Date.now();
    let both = 0;
    while (!b.holds() && Date.now() - cut < 2000) {
      if (a.holds() && b.holds()) both += 1;
      await sleep(5);
    }
    expect(both).toBe(0);
    expect(b.holds()).toBe(true);
    expect(a.holds()).toBe(false);
    // Moved within the time to live and one claim period.
    expect(Date.now() - cut).toBeLessThanOrEqual(300 + 100 + 300);
    expect(store.rows.get("coord")).toMatchObject({ holder: "b", term: 2 });
    // (The callbacks run on timers, which a loaded machine may delay: holds() is what is exact.)
    expect(heard.sort()).toEqual(["a:false", "a:true", "b:true"]);
    await a.stop();
    await b.stop();
  });

  test("a clean stop hands the lease back at once", async () => {
    const store = new FakeLeaseStore();
    const a = new Lease(store, "coord", "a", 10_000, logger, () => undefined);
    const b = new Lease(store, "coord", "b", 10_000, logger, () => undefined);
    await a.start();
    await b.start();
    await a.stop();
    expect(a.holds()).toBe(false);
    expect(await store.claim("coord", "b", 10_000)).toMatchObject({ holder: "b", term: 2 });
    await b.stop();
  });
});

describe("Lease.exclusively: waiting for another process's work under the lease", () => {
  test("a waiter waits as long as the holder keeps renewing, past its wait, and goes on once the work ends", async () => {
    const store = new FakeLeaseStore();
    // The holder's work takes 1.2 s under a lease of 300 ms (renewed every 100 ms); the waiter waits 400 ms at a time.
    const holder = new Lease(store, "start-up", "a", 300, logger, () => undefined);
    let workDone = 0;
    const holding = holder.exclusively(async () => {
      await sleep(1200);
      workDone = Date.now();
    }, 0);
    await sleep(20);
    const waiter = new Lease(store, "start-up", "b", 300, logger, () => undefined);
    let ran = 0;
    await waiter.exclusively(async () => void (ran = Date.now()), 400, 10_000);
    await holding;
    expect(ran).toBeGreaterThanOrEqual(workDone);
  });

  test("a holder that stops renewing (killed) is waited for until its lease expires, then the waiter takes it", async () => {
    const store = new FakeLeaseStore();
    // Held by a process that never renews it (killed at once): it expires after its 300 ms.
    await store.claim("start-up", "dead", 300);
    const waiter = new Lease(store, "start-up", "b", 300, logger, () => undefined);
    const t = Date.now();
    await waiter.exclusively(async () => undefined, 1000, 10_000);
    expect(Date.now() - t).toBeLessThan(1000);
    expect(store.rows.get("start-up")).toMatchObject({ holder: "b", term: 2 });
  });

  test("nothing seen to move (the database not answering) is given up after the wait; a holder that renews forever, at the most", async () => {
    const store = new FakeLeaseStore();
    store.unreachable.add("b");
    await store.claim("start-up", "a", 60_000);
    const cut = new Lease(store, "start-up", "b", 300, logger, () => undefined);
    let t = Date.now();
    await expect(cut.exclusively(async () => undefined, 300, 10_000)).rejects.toThrow(/was not free within/);
    expect(Date.now() - t).toBeLessThan(1500);
    // A holder renewing all along: waited for up to the most, not beyond.
    const store2 = new FakeLeaseStore();
    const forever = new Lease(store2, "start-up", "a", 300, logger, () => undefined);
    await forever.start();
    const waiter = new Lease(store2, "start-up", "b", 300, logger, () => undefined);
    t = Date.now();
    await expect(waiter.exclusively(async () => undefined, 200, 900)).rejects.toThrow(/was not free within/);
    const waited = Date.now() - t;
    await forever.stop();
    expect(waited).toBeGreaterThanOrEqual(900);
    expect(waited).toBeLessThan(2500);
  });
});

describe("LeaseSlots", () => {
  test("at most `count` holders across processes: a third waits for a release, and two of one process never share a slot", async () => {
    const store = new FakeLeaseStore();
    // Two processes, each with its own LeaseSlots on the same table.
    const a = new LeaseSlots(store, "replay", 2, 10_000, logger);
    const b = new LeaseSlots(store, "replay", 2, 10_000, logger);
    const first = await a.take(() => undefined);
    const second = await a.take(() => undefined);
    expect([first?.name, second?.name]).toEqual(["replay-1", "replay-2"]);
    expect(await b.take(() => undefined)).toBeNull();
    expect(await a.take(() => undefined)).toBeNull();
    await first!.release();
    const third = await b.take(() => undefined);
    expect(third?.name).toBe("replay-1");
    expect(store.rows.get("replay-1")!.holder).not.toBe(store.rows.get("replay-2")!.holder);
    await second!.release();
    await third!.release();
    expect([...store.rows.values()].every((r) => r.expiresMs === 0)).toBe(true);
  });

  test("a database that does not answer is an error, not every slot taken", async () => {
    const store = new FakeLeaseStore();
    const claim = store.claim.bind(store);
    store.claim = async (name, holder, ttlMs) => (name === "replay-2" ? Promise.reject(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" })) : claim(name, holder, ttlMs));
    const slots = new LeaseSlots(store, "replay", 2, 10_000, logger);
    const first = await slots.take(() => undefined);
    expect(first?.name).toBe("replay-1");
    await expect(slots.take(() => undefined)).rejects.toThrow("connect ECONNREFUSED");
    await first!.release();
  });

  test("a slot whose holder was killed frees when its lease expires; a slot that cannot be renewed is reported lost, before another takes it", async () => {
    const store = new FakeLeaseStore();
    const killed = new LeaseSlots(store, "replay", 1, 300, logger);
    const other = new LeaseSlots(store, "replay", 1, 300, logger);
    let lost = 0;
    const held = await killed.take(() => (lost += 1));
    expect(held).not.toBeNull();
    expect(await other.take(() => undefined)).toBeNull();
    // The database stops answering the holder: it hears that its slot is lost within the lease's time.
    store.unreachable.add(store.rows.get("replay-1")!.holder);
    const cut = Date.now();
    while (lost === 0 && Date.now() - cut < 2000) await sleep(5);
    expect(lost).toBe(1);
    expect(Date.now() - cut).toBeLessThan(300);
    // Its holder never comes back (as if killed): the slot is free once the lease has expired.
    await sleep(Math.max(0, store.rows.get("replay-1")!.expiresMs - Date.now()) + 5);
    const taken = await other.take(() => undefined);
    expect(taken?.name).toBe("replay-1");
    await taken!.release();
    // A slot released on purpose is not reported lost.
    let lostAfterRelease = 0;
    const again = await other.take(() => (lostAfterRelease += 1));
    await again!.release();
    await sleep(20);
    expect(lostAfterRelease).toBe(0);
  });
});
