import { performance } from "node:perf_hooks";
import { setImmediate as nextTurn, setTimeout as sleep } from "node:timers/promises";

/** Counts live work (decisions asked for), so that long jobs sharing the event loop can give way to it. */
export class LiveWork {
  count = 0;
}

export interface PaceSettings {
  /** Longest stretch of work before the event loop goes back to other requests. */
  sliceMs: number;
  /** While live work arrives, the job takes at most this share of the event loop. */
  busyShare: number;
}

/** For work someone waits for (a verification, a report): it gives way, but not for long. */
export const INTERACTIVE: PaceSettings = { sliceMs: 5, busyShare: 0.25 };
/** For work nobody waits on (a replay). */
export const BACKGROUND: PaceSettings = { sliceMs: 2, busyShare: 0.05 };

/**
 * Paces a long job on the event loop. Reads from SQLite are synchronous, so a job that reads and
 * checks a million records would otherwise hold the loop, and every decision, until it ends. After
 * each slice of work the pacer yields; when live work arrived since the last slice it pauses long
 * enough that the job's share of the loop stays at `busyShare`; while none arrives the job runs on.
 */
export class Pacer {
  private sliceStart = performance.now();
  private seen: number;

  constructor(
    private readonly live: LiveWork,
    private readonly settings: PaceSettings,
  ) {
    this.seen = live.count;
  }

  /** Call between units of work. */
  async tick(): Promise<void> {
    const own = performance.now() - this.sliceStart;
    if (own < this.settings.sliceMs) return;
    const live = this.live.count;
    const { busyShare } = this.settings;
    if (live !== this.seen) await sleep((own * (1 - busyShare)) / busyShare);
    else await nextTurn();
    this.seen = live;
    this.sliceStart = performance.now();
  }
}
