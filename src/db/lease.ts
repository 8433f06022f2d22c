import { randomUUID } from "node:crypto";
import os from "node:os";
import type { Logger } from "../lib/logger";
import type BetterSqlite3 from "better-sqlite3";
import { NOW_MS_SQL, whenFree, type Database } from "./database";

/** Who holds a lease now, as the database says after a claim. */
export interface LeaseClaim {
  holder: string;
  term: number;
  /** When the lease expires, on the clock the database's leases are kept on: it grows with each renewal. */
  expiresMs: number;
}

/**
 * Claims or renews the lease `name` for `holder` for `ttlMs`, in one statement: it is granted when
 * nobody holds it, when `holder` holds it already (a renewal), or when its holder let it expire
 * (a takeover: the term grows). Returns who holds it after the statement.
 *
 * On PostgreSQL expiry is read on the database's clock, which every replica shares, whatever the
 * machines' clocks say; on SQLite every process is on the same machine, so its clock serves.
 */
export async function claimLease(db: Database, name: string, holder: string, ttlMs: number): Promise<LeaseClaim> {
  if (db.kind === "sqlite") return whenFree(() => claimSqlite(db.sqlite, name, holder, ttlMs));
  const now = NOW_MS_SQL.postgresql;
  const { rows } = await db.pool.query<{ holder: string; term: string; expires_ms: string }>(
    `INSERT INTO leases (name, holder, expires_ms, term) VALUES ($1, $2, ${now} + $3, 1)
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms,
       term = CASE WHEN leases.holder = excluded.holder THEN leases.term ELSE leases.term + 1 END
     WHERE leases.holder = excluded.holder OR leases.expires_ms <= ${now}
     RETURNING holder, term, expires_ms`,
    [name, holder, ttlMs],
  );
  const found = rows[0] ?? (await db.pool.query<{ holder: string; term: string; expires_ms: string }>("SELECT holder, term, expires_ms FROM leases WHERE name = $1", [name])).rows[0];
  return { holder: found.holder, term: Number(found.term), expiresMs: Number(found.expires_ms) };
}

function claimSqlite(sqlite: BetterSqlite3.Database, name: string, holder: string, ttlMs: number): LeaseClaim {
  const now = Date.now();
  const row = sqlite
    .prepare(
      `INSERT INTO leases (name, holder, expires_ms, term) VALUES (?, ?, ?, 1)
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms,
         term = CASE WHEN leases.holder = excluded.holder THEN leases.term ELSE leases.term + 1 END
       WHERE leases.holder = excluded.holder OR leases.expires_ms <= ?
       RETURNING holder, term, expires_ms`,
    )
    .get(name, holder, now + ttlMs, now) as { holder: string; term: number | bigint; expires_ms: number | bigint } | undefined;
  const found = row ?? (sqlite.prepare("SELECT holder, term, expires_ms FROM leases WHERE name = ?").get(name) as { holder: string; term: number | bigint; expires_ms: number | bigint });
  return { holder: found.holder, term: Number(found.term), expiresMs: Number(found.expires_ms) };
}

/** Gives the lease up at once (a clean stop), so that another process takes it at its next claim. */
export async function releaseLease(db: Database, name: string, holder: string): Promise<void> {
  // Another process's commit may hold SQLite's lock this moment (worker mode: often): a release refused at once would leave the others waiting out the lease.
  if (db.kind === "sqlite") await whenFree(() => db.sqlite.prepare("UPDATE leases SET expires_ms = 0 WHERE name = ? AND holder = ?").run(name, holder));
  else await db.pool.query("UPDATE leases SET expires_ms = 0 WHERE name = $1 AND holder = $2", [name, holder]);
}

/** The lease was held by another process for longer than the caller would wait. */
export class LeaseBusyError extends Error {}

/** A name for this process as a lease holder: unique to this start. */
export function holderName(): string {
  return `${os.hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`;
}

export interface LeaseStore {
  claim(name: string, holder: string, ttlMs: number): Promise<LeaseClaim>;
  release(name: string, holder: string): Promise<void>;
}

export function leaseStore(db: Database): LeaseStore {
  return { claim: (name, holder, ttlMs) => claimLease(db, name, holder, ttlMs), release: (name, holder) => releaseLease(db, name, holder) };
}

/**
 * One lease, kept by this process: claimed at start and every third of its time to live, by every
 * process; the one that holds it acts (`onChange(true)`), the others stand by and take it over once
 * its holder stops renewing it (a holder killed: within ttl + ttl/3 of its last renewal).
 *
 * WARNING: two processes never act on the lease at once as long as the holder stops before the
 * database lets another take it: its own deadline is counted from the moment it *sent* the claim
 * that granted it, minus a margin for clock rate differences, so it always falls before the expiry
 * the database wrote. A holder that cannot reach the database keeps acting only until then. Ask
 * holds() at the moment of acting: onChange(false) runs on a timer, which a busy process may run
 * late. (For the Chron coordinator an overlap costs duplicate work, not correctness: a checkpoint
 * is unique by seq, and each process's witness log proves its own heads consistent.)
 */
export class Lease {
  private held = false;
  private deadline = 0;
  private interval: NodeJS.Timeout | null = null;
  private expiry: NodeJS.Timeout | null = null;
  private claiming: Promise<void> | null = null;
  private changing: Promise<void> = Promise.resolve();
  private stopped = false;
  term = 0;
  /** Why the last claim failed (the database did not answer), until one succeeds. */
  lastError: Error | null = null;
  /** The lease as the last claim that the database answered found it. */
  private seen: LeaseClaim | null = null;

  constructor(
    private readonly store: LeaseStore,
    readonly name: string,
    readonly holder: string,
    private readonly ttlMs: number,
    private readonly logger: Logger,
    private readonly onChange: (held: boolean) => Promise<void> | void,
  ) {}

  /** Claims once (settled, with onChange run, before it returns), then keeps claiming. */
  async start(): Promise<void> {
    await this.claim();
    await this.changing;
    this.interval = setInterval(() => void this.claim(), Math.max(50, Math.floor(this.ttlMs / 3)));
    this.interval.unref();
  }

  /**
   * Runs `work` while holding the lease, claiming it every 100 ms until it is free (see acquire),
   * renewing it every third of its time to live while `work` runs, then handing it back.
   */
  async exclusively<T>(work: () => Promise<T>, waitMs: number, maxWaitMs = waitMs): Promise<T> {
    await this.acquire(waitMs, maxWaitMs);
    try {
      return await work();
    } finally {
      await this.stop();
    }
  }

  /**
   * Claims the lease every 100 ms until it is free, then renews it every third of its time to live
   * until stop(). It waits `waitMs` for the lease, and `waitMs` more each time it sees the lease's
   * holder renew it (or another take it), up to `maxWaitMs` in all: long work under the lease (a
   * start-up that imports files) is waited for as long as its process is alive, while a lease
   * nobody can be seen to keep (the database not answering) is given up after `waitMs`.
   * LeaseBusyError when it gives up.
   */
  async acquire(waitMs: number, maxWaitMs = waitMs): Promise<void> {
    const started = Date.now();
    let deadline = started + waitMs;
    let told = started;
    let last: LeaseClaim | null = null;
    for (;;) {
      await this.claim();
      if (this.holds()) break;
      const seen = this.seen;
      if (seen && last && (seen.holder !== last.holder || seen.term !== last.term || seen.expiresMs > last.expiresMs)) {
        deadline = Math.min(started + maxWaitMs, Math.max(deadline, Date.now() + waitMs));
      }
      last = seen ?? last;
      if (Date.now() >= deadline) throw new LeaseBusyError(`the lease ${this.name} was not free within ${Date.now() - started} ms`);
      if (Date.now() - told >= 15_000 && seen) {
        told = Date.now();
        this.logger.info("waiting for a lease that another CLAIIM process holds", { lease: this.name, holder: seen.holder, term: seen.term, waited_ms: told - started });
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    this.interval = setInterval(() => void this.claim(), Math.max(50, Math.floor(this.ttlMs / 3)));
    this.interval.unref();
  }

  /** True while this process may act on the lease. */
  holds(): boolean {
    return this.held && Date.now() < this.deadline;
  }

  /** Stops claiming and, when held, hands the lease back at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.interval) clearInterval(this.interval);
    await this.claiming;
    const was = this.held;
    this.set(false);
    await this.changing;
    if (was) await this.store.release(this.name, this.holder).catch((err: Error) => this.logger.warn("lease could not be released; it expires on its own", { lease: this.name, error: err.message }));
  }

  private claim(): Promise<void> {
    if (this.claiming || this.stopped) return this.claiming ?? Promise.resolve();
    const sent = Date.now();
    this.claiming = this.store
      .claim(this.name, this.holder, this.ttlMs)
      .then((claim) => {
        this.lastError = null;
        this.seen = claim;
        if (this.stopped) return;
        const mine = claim.holder === this.holder;
        if (mine) {
          this.deadline = sent + this.ttlMs - Math.max(10, Math.floor(this.ttlMs / 20));
          if (this.expiry) clearTimeout(this.expiry);
          this.expiry = setTimeout(() => this.set(false), this.deadline - Date.now());
          this.expiry.unref();
          if (!this.held || claim.term !== this.term) this.logger.info("lease taken", { lease: this.name, holder: this.holder, term: claim.term });
        }
        this.term = claim.term;
        this.set(mine);
      })
      .catch((err: Error) => {
        this.lastError = err;
        this.logger.warn("lease could not be claimed", { lease: this.name, error: err.message, held_until: this.held ? new Date(this.deadline).toISOString() : null });
      })
      .finally(() => {
        this.claiming = null;
      });
    return this.claiming;
  }

  private set(held: boolean): void {
    if (held === this.held) return;
    this.held = held;
    if (!held && this.expiry) clearTimeout(this.expiry);
    if (!held) this.logger.info("lease no longer held", { lease: this.name, holder: this.holder });
    this.changing = this.changing.then(() => this.onChange(held)).catch((err: Error) => {
      this.logger.error("lease holder change failed", { lease: this.name, error: err.message });
    });
  }
}

/** A slot taken from LeaseSlots: held, and renewed, until released. */
export interface HeldSlot {
  name: string;
  release(): Promise<void>;
}

/**
 * A limit on work that runs at once across every process on the database (workers of a machine and
 * replicas alike): `count` leases, `${prefix}-1` to `${prefix}-${count}`, each held by one piece of
 * work while it runs. A process killed with its work frees the slot when the lease expires.
 */
export class LeaseSlots {
  constructor(
    private readonly store: LeaseStore,
    private readonly prefix: string,
    private readonly count: number,
    private readonly ttlMs: number,
    private readonly logger: Logger,
  ) {}

  /**
   * A free slot, or null when every one is held. `onLost` runs if the slot is lost before it is
   * released (its lease could not be renewed in time: the database unreachable): the work must
   * stop, or it would run beside the one that takes the slot next.
   */
  async take(onLost: () => void): Promise<HeldSlot | null> {
    // A holder of its own for each piece of work: two of one process must not share (renew) a slot.
    const holder = holderName();
    for (let i = 1; i <= this.count; i++) {
      let released = false;
      const lease = new Lease(this.store, `${this.prefix}-${i}`, holder, this.ttlMs, this.logger, (held) => {
        if (!held && !released) onLost();
      });
      try {
        await lease.acquire(0);
      } catch (err) {
        await lease.stop();
        // A slot held by other work is busy; one the database could not be asked about is an error, not a full house.
        if (err instanceof LeaseBusyError && !lease.lastError) continue;
        throw lease.lastError ?? err;
      }
      return {
        name: lease.name,
        release: async () => {
          released = true;
          await lease.stop();
        },
      };
    }
    return null;
  }
}
