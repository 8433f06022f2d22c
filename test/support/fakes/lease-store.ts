import type { LeaseClaim, LeaseStore } from "../../../src/db/lease";

/** The leases table in memory, with the database's rule; `unreachable` holders get errors, as from a database they cannot reach. */
export class FakeLeaseStore implements LeaseStore {
  rows = new Map<string, { holder: string; expiresMs: number; term: number }>();
  unreachable = new Set<string>();
  async claim(name: string, holder: string, ttlMs: number): Promise<LeaseClaim> {
    if (this.unreachable.has(holder)) throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    const now = Date.now();
    const row = this.rows.get(name);
    if (!row) this.rows.set(name, { holder, expiresMs: now + ttlMs, term: 1 });
    else if (row.holder === holder || row.expiresMs <= now) this.rows.set(name, { holder, expiresMs: now + ttlMs, term: row.holder === holder ? row.term : row.term + 1 });
    const found = this.rows.get(name)!;
    return { holder: found.holder, term: found.term, expiresMs: found.expiresMs };
  }

  async release(name: string, holder: string): Promise<void> {
    const row = this.rows.get(name);
    if (row?.holder === holder) row.expiresMs = 0;
  }
}
