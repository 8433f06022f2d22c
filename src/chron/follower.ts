import { performance } from "node:perf_hooks";
import pg from "pg";
import { ServiceUnavailableError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import type { ChronStore, Effect } from "./chron-store";
import type { ChronRow, EventContent } from "./record";

/** The PostgreSQL channel on which the `chron_records_notify` trigger announces each committed event. */
export const CHANGE_CHANNEL = "claiim_chron_events";

export interface FollowerSettings {
  /** How often the chain is read for events when nothing announced one (the fallback on PostgreSQL, the only way on SQLite). */
  pollMs: number;
  /** Past this, a process that has not caught up answers 503 `state_stale` instead of answering from what it holds. */
  maxLagMs: number;
}

/** Applies one event committed by another process to what this one holds in memory; throws when it cannot (it is tried again). */
export type ChangeHandler = (event: EventContent, row: ChronRow) => Promise<void>;

/** How a follower hears of new events at once; it polls anyway. */
export interface ChangeNotices {
  start(onNotice: () => void): Promise<void>;
  stop(): Promise<void>;
}

const BATCH = 500;

/**
 * Every process learns every change: the state each CLAIIM process holds in memory (the identity
 * directory, the active and shadow policy, the signing keys) is kept up to date from the Chron
 * events that other processes commit, applied one by one in sequence order. Only events are read
 * (`kind = 'event'`), never decisions, so following costs nothing per decision.
 *
 * Events this process committed itself are skipped: it applied them when it made the change. They
 * are known by id, noted before their INSERT is sent (see `track`), so the follower cannot see one
 * before it knows it is its own.
 *
 * WARNING: fail closed. `check()` throws 503 `state_stale` unless this process has applied every
 * event committed up to `maxLagMs` ago; every authenticated request goes through `ensureFresh()`,
 * which reads memory only unless the follower is behind.
 * The follower is fresh as of the moment it read the chain's head, once it has applied everything
 * up to that head: every record at or below a committed head was committed before it (each record
 * chains from the one before it), so nothing below it can appear later.
 */
export class ChronFollower {
  private lastSeq = 0;
  /** How many events of other processes this follower applied. */
  private appliedCount = 0;
  /** performance.now() (a monotonic clock: a wall clock set back must not hide a lag) when the chain's head was last read and caught up with. */
  private freshAsOf = 0;
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<void> | null = null;
  private again = false;
  private failure: string | null = null;
  /** Ids of events this process is committing ("sending") or has committed, that the follower has not yet passed. */
  private readonly own = new Map<string, "sending" | "committed">();
  /** Own events the follower passed over while their commit was still in flight: if it is then reported failed, they are applied after all. */
  private readonly passed = new Map<string, ChronRow>();
  private readonly lags: number[] = [];

  constructor(
    private readonly store: Pick<ChronStore, "head" | "list">,
    private readonly handle: ChangeHandler,
    private readonly settings: FollowerSettings,
    private readonly logger: Logger,
    private readonly notices: ChangeNotices | null = null,
  ) {}

  /** Follows from the chain's head as it is now: call it before the state it keeps up to date is loaded. */
  async from(): Promise<void> {
    const started = performance.now();
    this.lastSeq = (await this.store.head())?.seq ?? 0;
    this.freshAsOf = started;
    this.running = true;
  }

  /** Begins to follow (after the state is loaded). */
  async start(): Promise<void> {
    if (this.notices) {
      await this.notices.start(() => this.poll()).catch((err: Error) => this.logger.warn("chron change notices unavailable; polling only", { error: err.message }));
    }
    // What other processes committed while this one loaded its state.
    await this.poll();
    this.schedule();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.notices?.stop().catch(() => undefined);
    while (this.polling) await this.polling;
  }

  /**
   * A ChronStore whose appends note the ids of this process's own events before they are sent, so
   * that the follower skips them; an append that fails un-notes them, and applies any that the
   * follower already passed over (a commit can go through and still be reported failed).
   */
  track(store: ChronStore): ChronStore {
    const append = async (build: (head: ChronRow | null) => ChronRow[], effect?: Effect): Promise<ChronRow[]> => {
      let events: ChronRow[] = [];
      // The rows are built under the writers' lock, just before they are sent: noted there.
      const noting = (head: ChronRow | null): ChronRow[] => {
        const rows = build(head);
        events = this.running ? rows.filter((r) => r.kind === "event") : [];
        for (const r of events) this.own.set(r.id, "sending");
        return rows;
      };
      let rows: ChronRow[];
      try {
        rows = await store.append(noting, effect);
      } catch (err) {
        for (const r of events) {
          if (this.own.delete(r.id)) continue;
          const passed = this.passed.get(r.id);
          this.passed.delete(r.id);
          // Not awaited: the change that failed may hold the queue the handler waits on.
          if (passed) void this.apply(passed).catch((e: Error) => this.logger.error("could not apply an event whose commit was reported failed", { seq: passed.seq, error: e.message }));
        }
        throw err;
      }
      for (const r of events) {
        if (this.own.has(r.id)) this.own.set(r.id, "committed");
        else this.passed.delete(r.id);
      }
      return rows;
    };
    return new Proxy(store, { get: (target, prop, receiver) => (prop === "append" ? append : (Reflect.get(target, prop, receiver) as unknown)) });
  }

  /** Throws 503 `state_stale` when this process may hold state older than the bound. Memory only. */
  check(now = performance.now()): void {
    if (!this.running) return;
    const lag = Math.round(now - this.freshAsOf);
    if (lag > this.settings.maxLagMs) {
      throw new ServiceUnavailableError(
        "state_stale",
        `this process has not applied the changes of the last ${lag} ms (${this.failure ?? "it is falling behind"}); it answers nothing from stale state; retry, or use another replica`,
      );
    }
  }

  /**
   * What every authenticated request asks first. Fresh: nothing (memory only, the usual case).
   * Behind (the event loop was held, or a poll failed): one catch-up now, shared by every request
   * that asks meanwhile and given at most maxLagMs, then 503 `state_stale` if still behind. So a
   * stall of this process's own does not turn into 503s; a database it cannot read does.
   */
  ensureFresh(): void | Promise<void> {
    if (!this.running || performance.now() - this.freshAsOf <= this.settings.maxLagMs) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.settings.maxLagMs)));
    return Promise.race([this.poll(), deadline]).then(() => {
      clearTimeout(timer);
      this.check();
    });
  }

  /** Why this process is not ready, if it is behind. */
  problem(now = performance.now()): string | null {
    try {
      this.check(now);
      return null;
    } catch (err) {
      return (err as Error).message;
    }
  }

  /** How far behind, in ms, at the end of each catch-up that applied something (newest last, at most 1000). */
  appliedLags(): number[] {
    return [...this.lags];
  }

  /** What it keeps about this process's own events (both go back to 0 once the follower has passed them). */
  ownKept(): { own: number; passed: number } {
    return { own: this.own.size, passed: this.passed.size };
  }

  /**
   * Reads and applies, now, what other processes committed: for a request that named something
   * this process does not know, which another process may have created a moment ago (read your
   * writes across processes). True when it applied any event of theirs.
   */
  async catchUpNow(): Promise<boolean> {
    const before = this.appliedCount;
    await this.poll();
    return this.appliedCount !== before;
  }

  /** Reads and applies what is new now (and once more if asked again meanwhile). */
  poll(): Promise<void> {
    if (!this.running) return Promise.resolve();
    if (this.polling) {
      this.again = true;
      return this.polling;
    }
    this.polling = (async () => {
      try {
        do {
          this.again = false;
          await this.catchUp();
        } while (this.again && this.running);
      } finally {
        this.polling = null;
      }
    })();
    return this.polling;
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      void this.poll().finally(() => this.schedule());
    }, this.settings.pollMs);
    this.timer.unref();
  }

  private async catchUp(): Promise<void> {
    const started = performance.now();
    try {
      const head = (await this.store.head())?.seq ?? 0;
      while (this.lastSeq < head) {
        const rows = await this.store.list({ kind: "event", toSeq: head }, this.lastSeq, BATCH);
        for (const row of rows) {
          const own = this.own.get(row.id);
          if (own) {
            this.own.delete(row.id);
            if (own === "sending") this.passed.set(row.id, row);
          } else {
            await this.apply(row);
            this.appliedCount += 1;
            this.noteLag(row);
          }
          this.lastSeq = row.seq;
        }
        if (rows.length < BATCH) this.lastSeq = head;
      }
      this.freshAsOf = started;
      if (this.failure) this.logger.info("caught up with the changes of other processes again", { seq: this.lastSeq });
      this.failure = null;
    } catch (err) {
      const message = (err as Error).message;
      if (this.failure !== message) this.logger.error("could not follow the changes of other processes", { after_seq: this.lastSeq, error: message });
      this.failure = `the changes of other processes could not be read or applied: ${message}`;
    }
  }

  private async apply(row: ChronRow): Promise<void> {
    await this.handle(JSON.parse(row.content) as EventContent, row);
  }

  private noteLag(row: ChronRow): void {
    this.lags.push(Date.now() - row.tsMs);
    if (this.lags.length > 1000) this.lags.shift();
  }
}

/**
 * PostgreSQL's LISTEN on CHANGE_CHANNEL, on a connection of its own (a pooled one would be handed
 * to others). A lost connection is opened again after a second; meanwhile the follower polls.
 */
export class PostgresChangeNotices implements ChangeNotices {
  private client: pg.Client | null = null;
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;

  constructor(
    private readonly connection: pg.ClientConfig,
    private readonly logger: Logger,
  ) {}

  async start(onNotice: () => void): Promise<void> {
    this.stopped = false;
    const client = new pg.Client(this.connection);
    const lost = (err?: Error) => {
      if (this.client !== client) return;
      this.client = null;
      client.end().catch(() => undefined);
      if (this.stopped) return;
      this.logger.warn("chron change notices lost; listening again in 1 s", { error: err?.message ?? "connection ended" });
      this.retry = setTimeout(() => void this.start(onNotice).catch(() => lost()), 1000);
      this.retry.unref();
    };
    client.on("error", lost);
    client.on("end", () => lost());
    client.on("notification", () => onNotice());
    this.client = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
    } catch (err) {
      lost(err as Error);
      throw err;
    }
    // Whatever was committed while no one listened.
    onNotice();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    const client = this.client;
    this.client = null;
    await client?.end();
  }
}
