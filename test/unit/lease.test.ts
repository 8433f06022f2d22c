import { Lease, type LeaseClaim, type LeaseStore } from "../../src/db/lease";
import { createLogger } from "../../src/lib/logger";

const logger = createLogger("silent");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The leases table in memory, with the database's rule; `unreachable` holders get errors, as from a database they cannot reach. */
class MemoryLeases implements LeaseStore {
  rows = new Map<string, { holder: string; expiresMs: number; term: number }>();
  unreachable = new Set<string>();

  async claim(name: string, holder: string, ttlMs: number): Promise<LeaseClaim> {
    if (this.unreachable.has(holder)) throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    const now = Date.now();
    const row = this.rows.get(name);
    if (!row) this.rows.set(name, { holder, expiresMs: now + ttlMs, term: 1 });
    else if (row.holder === holder || row.expiresMs <= now) this.rows.set(name, { holder, expiresMs: now + ttlMs, term: row.holder === holder ? row.term : row.term + 1 });
    const found = this.rows.get(name)!;
    return { holder: found.holder, term: found.term };
  }

  async release(name: string, holder: string): Promise<void> {
    const row = this.rows.get(name);
    if (row?.holder === holder) row.expiresMs = 0;
  }
}

describe("Lease", () => {
  test("one holder at a time: the first acts, the other stands by; a holder cut off from the database stops acting before the other takes over", async () => {
    const store = new MemoryLeases();
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
    const store = new MemoryLeases();
    const a = new Lease(store, "coord", "a", 10_000, logger, () => undefined);
    const b = new Lease(store, "coord", "b", 10_000, logger, () => undefined);
    await a.start();
    await b.start();
    await a.stop();
    expect(a.holds()).toBe(false);
    expect(await store.claim("coord", "b", 10_000)).toEqual({ holder: "b", term: 2 });
    await b.stop();
  });
});
