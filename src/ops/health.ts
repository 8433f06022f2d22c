// Readiness of Chron: CLAIIM answers nothing it cannot record, so a writer that is stuck or failing,
// or a checkpointer that stopped signing, makes it not ready, with the reason.

/** How the Chron writer fares (ChronWriter.health). */
export interface WriterState {
  queued: number;
  committingSinceMs: number | null;
  failing: { message: string; atMs: number } | null;
  lastCommitMs: number | null;
}

/** How checkpoint signing fares (Checkpointer.health). */
export interface CheckpointerState {
  lastSignedSeq: number;
  lastSignedAtMs: number | null;
  headSeq: number;
  /** Committed records after the last signed checkpoint. */
  unsigned: number;
  /** How long the oldest unsigned record has waited, in seconds (0 when none waits). */
  lagSeconds: number;
  failing: { message: string; atMs: number } | null;
}

export interface ChronHealthSettings {
  /** A commit running longer than this, or a failure this recent with no commit since, makes the writer not ready. */
  stuckSeconds: number;
  /** The checkpointer's schedule: an unsigned record older than twice this (plus stuckSeconds) means signing is stuck. */
  checkpointEverySeconds: number;
}

export interface ChronHealth {
  ready: boolean;
  /** Why not, in words, when not ready. */
  reason: string | null;
  writer: { status: "ok" | "stuck" | "failing"; queued: number; last_commit_at: string | null; error?: string };
  checkpointer: {
    status: "ok" | "stuck" | "failing";
    last_signed_seq: number;
    last_signed_at: string | null;
    unsigned_records: number;
    lag_seconds: number;
    error?: string;
  };
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function chronHealth(writer: WriterState, checkpointer: CheckpointerState, settings: ChronHealthSettings, nowMs = Date.now()): ChronHealth {
  const reasons: string[] = [];
  let writerStatus: ChronHealth["writer"]["status"] = "ok";
  let writerError: string | undefined;
  if (writer.committingSinceMs !== null && nowMs - writer.committingSinceMs > settings.stuckSeconds * 1000) {
    writerStatus = "stuck";
    reasons.push(`the Chron writer's commit has been running for ${Math.round((nowMs - writer.committingSinceMs) / 1000)} s`);
  } else if (writer.failing && nowMs - writer.failing.atMs <= settings.stuckSeconds * 1000) {
    // WARNING: only a recent failure counts. An idle CLAIIM commits nothing that could clear an old
    // one, and a balancer that sends no traffic to it would keep it out for good.
    writerStatus = "failing";
    writerError = writer.failing.message;
    reasons.push(`the Chron writer's last commit failed: ${writer.failing.message}`);
  }
  let cpStatus: ChronHealth["checkpointer"]["status"] = "ok";
  let cpError: string | undefined;
  const stuckAfter = 2 * settings.checkpointEverySeconds + settings.stuckSeconds;
  if (checkpointer.failing) {
    cpStatus = "failing";
    cpError = checkpointer.failing.message;
    reasons.push(`signing Chron checkpoints fails: ${checkpointer.failing.message}`);
  } else if (checkpointer.lagSeconds > stuckAfter) {
    cpStatus = "stuck";
    reasons.push(`${checkpointer.unsigned} Chron records have waited ${Math.round(checkpointer.lagSeconds)} s for a signed checkpoint (at most ${stuckAfter} s expected)`);
  }
  return {
    ready: reasons.length === 0,
    reason: reasons.length ? reasons.join("; ") : null,
    writer: { status: writerStatus, queued: writer.queued, last_commit_at: iso(writer.lastCommitMs), ...(writerError ? { error: writerError } : {}) },
    checkpointer: {
      status: cpStatus,
      last_signed_seq: checkpointer.lastSignedSeq,
      last_signed_at: iso(checkpointer.lastSignedAtMs),
      unsigned_records: checkpointer.unsigned,
      lag_seconds: Math.round(checkpointer.lagSeconds * 10) / 10,
      ...(cpError ? { error: cpError } : {}),
    },
  };
}
