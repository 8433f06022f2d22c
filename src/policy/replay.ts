import { randomUUID } from "node:crypto";
import { scanRecords, type ChronFilter, type ChronStore, type Recorder } from "../chron/chron-store";
import { decisionRef, newEvent, policyOutcome, type DecisionContent, type DecisionRef } from "../chron/record";
import { ConflictError, NotFoundError, ServiceUnavailableError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import { checkWindow } from "../shared/windows";
import { BACKGROUND, Pacer, type LiveWork, type PaceSettings } from "../lib/pacer";
import { nanosOf, type ActivePolicy } from "./policy-engine";
import { type Actor, actorName } from "../shared/principal";
import { decisionOf, outcomeOf, type PolicyInput } from "./decision-policy";
import type { EvalOutcome } from "./evaluation/types";
import type { HeldSlot, LeaseSlots } from "../db/lease";

export interface ReplayChange extends DecisionRef {
  recorded: { decision: string; reasons: string[]; policy_version: number | null };
  replayed: { decision: string; reasons: string[] };
  /** Redaction erased or masked part of the recorded input, so the replay saw less than the original decision did. */
  redacted: boolean;
}

export interface ReplayView {
  id: string;
  version: number;
  revision: string;
  from: string;
  to: string;
  organization_id: string | null;
  requested_by: string;
  state: "running" | "done" | "failed";
  started_at: string;
  finished_at: string | null;
  error: string | null;
  progress: { processed: number; total: number };
  unchanged: number;
  /** Records without a recorded input (none can be replayed). */
  skipped: number;
  /** Replayed records whose input was redacted. */
  redacted: number;
  /** Evaluations stopped at the deadline or the memory limit (each counted as a deny). */
  bounds_exceeded: number;
  allow_to_deny: { count: number; records: ReplayChange[] };
  deny_to_allow: { count: number; records: ReplayChange[] };
  /** Neither version allows, but one denies where the other asks for a human's approval. */
  approval_changes: { count: number; records: ReplayChange[] };
  /** True when more changes were found than `max_records` keeps per direction; the counts are complete. */
  truncated: boolean;
}

export interface ReplayRequest {
  version: number;
  fromMs: number;
  toMs: number;
  orgId: string | null;
  maxRecords: number;
}

export interface ReplaySettings extends PaceSettings {
  pageSize: number;
  maxRunning: number;
  /** Finished replays kept for reading. */
  keepFinished: number;
  /** A replay is stopped after this many evaluations exceeded the deadline or the memory limit. */
  tripsToStop: number;
  /** Records evaluated at once (in the evaluation workers) between two ticks of the pacer. */
  chunk: number;
}

/** Replays running at once, in every CLAIIM process on the database together. */
export const REPLAY_MAX_RUNNING = 2;

const DEFAULTS: ReplaySettings = { ...BACKGROUND, pageSize: 200, maxRunning: REPLAY_MAX_RUNNING, keepFinished: 50, tripsToStop: 3, chunk: 32 };

/** A replay stopped because its version keeps exceeding the evaluation bounds. */
class BoundsExceeded extends Error {}

function wasRedacted(d: DecisionContent): boolean {
  return [...(d.erased ?? []), ...(d.masked ?? [])].some((p) => p === "/input" || p.startsWith("/input/"));
}

/**
 * Replays a published version against a window of recorded decisions: what would it have decided
 * on each recorded input, and where would that differ. It changes nothing. It runs in the
 * background in short slices, paced so that live decisions keep their pace (see Pacer).
 */
export class ReplayRunner {
  private readonly jobs = new Map<string, ReplayView>();
  private readonly settings: ReplaySettings;
  /** Replays between the admission check and their registration, which awaits loading. */
  private starting = 0;
  /** Set by stop(): running replays end at their next step, and no new one starts. */
  private stopping = false;
  private readonly running = new Set<Promise<unknown>>();
  /** Replays whose slot lease was lost: they end at their next step. */
  private readonly slotLost = new Set<string>();

  constructor(
    private readonly chron: Pick<ChronStore, "list" | "bounds">,
    private readonly load: (version: number) => Promise<ActivePolicy>,
    private readonly record: Recorder,
    /** Live decisions: while they arrive, the replay keeps to its share of the event loop. */
    private readonly live: LiveWork,
    private readonly logger: Logger,
    settings: Partial<ReplaySettings> = {},
    /** Told when a replay is stopped for exceeding the evaluation bounds (recorded in Chron, reported in the status). */
    private readonly onStopped: (job: ReplayView, message: string) => Promise<void> = async () => undefined,
    /** In worker mode, the replays the other workers of this machine run or ran (all, or the one named): a replay runs in the worker asked to start it. */
    private readonly elsewhere: ((orgId: string | null, id?: string) => Promise<ReplayView[]>) | null = null,
    /** The limit on running replays, held in the database for every process on it (maxRunning slots); without it (service tests), this process's own count. */
    private readonly slots: LeaseSlots | null = null,
  ) {
    this.settings = { ...DEFAULTS, ...settings };
  }

  /** Starts a replay and returns at once, with the replay as it starts; read its progress and result with `get`. */
  async start(req: ReplayRequest, actor: Actor): Promise<ReplayView> {
    checkWindow(req.fromMs, req.toMs, "from", "to");
    if (this.stopping) throw new ServiceUnavailableError("not_ready", "CLAIIM is stopping; replays cannot start");
    const running = [...this.jobs.values()].filter((j) => j.state === "running").length + this.starting;
    if (running >= this.settings.maxRunning) throw new ConflictError("replays_busy", `${running} replays are running; wait for one to finish`);
    this.starting += 1;
    const id = randomUUID();
    let policy: ActivePolicy;
    let span: Awaited<ReturnType<ChronStore["bounds"]>>;
    let slot: HeldSlot | null = null;
    const filter: ChronFilter = { kind: "decision", fromMs: req.fromMs, toMs: req.toMs, orgId: req.orgId ?? undefined };
    try {
      policy = await this.load(req.version);
      try {
        span = await this.chron.bounds(filter);
        slot = this.slots ? await this.slots.take(() => this.slotLost.add(id)) : null;
        if (this.slots && !slot) throw new ConflictError("replays_busy", `${this.settings.maxRunning} replays are running in the CLAIIM processes on this database; wait for one to finish`);
      } catch (err) {
        policy.release?.();
        throw err;
      }
    } finally {
      this.starting -= 1;
    }
    const job: ReplayView = {
      id,
      version: policy.version,
      revision: policy.revision,
      from: new Date(req.fromMs).toISOString(),
      to: new Date(req.toMs).toISOString(),
      organization_id: req.orgId,
      requested_by: actorName(actor),
      state: "running",
      started_at: new Date().toISOString(),
      finished_at: null,
      error: null,
      progress: { processed: 0, total: span?.count ?? 0 },
      unchanged: 0,
      skipped: 0,
      redacted: 0,
      bounds_exceeded: 0,
      allow_to_deny: { count: 0, records: [] },
      deny_to_allow: { count: 0, records: [] },
      approval_changes: { count: 0, records: [] },
      truncated: false,
    };
    // Who looked at what is part of the trail, as for exports: the replay is recorded before it runs.
    const started = this.record([
      newEvent({
        type: "policy.replay_started",
        actor,
        subject: { type: "replay", id: job.id, name: policy.revision },
        organization: null,
        before: null,
        after: { version: job.version, from: job.from, to: job.to, organization_id: req.orgId, decisions: job.progress.total },
      }),
    ]);
    try {
      await started;
    } catch (err) {
      policy.release?.();
      await slot?.release();
      throw err;
    }
    this.jobs.set(job.id, job);
    this.forgetOld();
    const startedAs = structuredClone(job);
    const done = this.run(job, policy, filter, span, req.maxRecords)
      .then(
        () => this.finish(job, null),
        (err: Error) => this.finish(job, err),
      )
      .finally(async () => {
        policy.release?.();
        await slot?.release();
        this.slotLost.delete(job.id);
        this.running.delete(done);
      });
    this.running.add(done);
    return startedAs;
  }

  /** Ends every running replay at its next step (each reports that CLAIIM stopped), and refuses new ones. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.running]);
  }

  /** A replay, seen by a caller confined to `orgId` only when it ran within that organisation. */
  get(id: string, orgId: string | null): ReplayView {
    const job = this.jobs.get(id);
    if (!job || (orgId !== null && job.organization_id !== orgId)) throw new NotFoundError("replay_not_found", `no replay ${id}`);
    return job;
  }

  list(orgId: string | null): ReplayView[] {
    return [...this.jobs.values()].filter((j) => orgId === null || j.organization_id === orgId).reverse();
  }

  /** A replay, whichever worker of this machine runs it (see `get`). */
  async find(id: string, orgId: string | null): Promise<ReplayView> {
    try {
      return this.get(id, orgId);
    } catch (err) {
      const there = this.elsewhere ? (await this.elsewhere(orgId, id))[0] : undefined;
      if (!there) throw err;
      return there;
    }
  }

  /** The replays of every worker of this machine, newest first (see `list`). */
  async listEverywhere(orgId: string | null): Promise<ReplayView[]> {
    const here = this.list(orgId);
    if (!this.elsewhere) return here;
    return [...here, ...(await this.elsewhere(orgId))].sort((a, b) => (a.started_at < b.started_at ? 1 : a.started_at > b.started_at ? -1 : 0));
  }

  private async run(job: ReplayView, policy: ActivePolicy, filter: ChronFilter, span: Awaited<ReturnType<ChronStore["bounds"]>>, maxRecords: number): Promise<void> {
    const pacer = new Pacer(this.live, this.settings);
    // Records evaluated at once: doubling up to settings.chunk while none exceeds the bounds, back to
    // one after one does, so that a version that keeps exceeding them stops at tripsToStop.
    let width = 1;
    for await (const rows of scanRecords(this.chron, filter, this.settings.pageSize, span)) {
      await pacer.tick();
      for (let i = 0; i < rows.length; ) {
        if (this.stopping) throw new Error("stopped: CLAIIM is stopping");
        if (this.slotLost.has(job.id)) throw new Error("stopped: its place among the running replays could not be kept (the database did not answer in time)");
        const tripsBefore = job.bounds_exceeded;
        const chunk = rows.slice(i, i + width).map((row) => ({ seq: row.seq, d: JSON.parse(row.content) as DecisionContent }));
        i += chunk.length;
        // Each record is evaluated at the time it was decided (time.now_ns), within the same bounds as decisions.
        const outcomes = await Promise.all(chunk.map(({ d }) => (d.input ? policy.evaluate(d.input, nanosOf(d.timestamp)) : null)));
        chunk.forEach(({ seq, d }, k) => this.replayOne(job, policy, seq, d, outcomes[k], maxRecords));
        width = job.bounds_exceeded > tripsBefore ? 1 : Math.min(width * 2, this.settings.chunk);
        if (job.bounds_exceeded >= this.settings.tripsToStop) {
          const message = `replay ${job.id} of policy version ${job.version} stopped: ${job.bounds_exceeded} evaluations exceeded the evaluation deadline or memory limit`;
          await this.onStopped(job, message).catch((err: Error) => this.logger.error("could not record the stopped replay", { id: job.id, error: err.message }));
          throw new BoundsExceeded(message);
        }
        await pacer.tick();
      }
    }
  }

  private replayOne(job: ReplayView, policy: ActivePolicy, seq: number, d: DecisionContent, outcome: EvalOutcome | null, maxRecords: number): void {
    job.progress.processed += 1;
    if (!d.input || !outcome) {
      job.skipped += 1;
      return;
    }
    const redacted = wasRedacted(d);
    if (redacted) job.redacted += 1;
    if (!outcome.ok && outcome.kind !== "error") job.bounds_exceeded += 1;
    const result = decisionOf(policy, outcome, d.input as PolicyInput);
    // Compared with what the recorded version answered, before any approval was looked at.
    const recorded = policyOutcome(d);
    const decision = outcomeOf(result);
    if (decision === recorded) {
      job.unchanged += 1;
      return;
    }
    const side = recorded === "allow" ? job.allow_to_deny : decision === "allow" ? job.deny_to_allow : job.approval_changes;
    side.count += 1;
    if (side.records.length >= maxRecords) {
      job.truncated = true;
      return;
    }
    side.records.push({
      ...decisionRef(seq, d),
      recorded: { decision: recorded, reasons: d.reasons, policy_version: d.policy.version },
      replayed: { decision, reasons: result.reasons },
      redacted,
    });
  }

  private finish(job: ReplayView, err: Error | null): void {
    job.finished_at = new Date().toISOString();
    job.error = err?.message ?? null;
    job.state = err ? "failed" : "done";
    if (err) this.logger.error("replay failed", { id: job.id, version: job.version, error: err.message });
    else this.logger.info("replay finished", { id: job.id, version: job.version, processed: job.progress.processed, allow_to_deny: job.allow_to_deny.count, deny_to_allow: job.deny_to_allow.count });
  }

  private forgetOld(): void {
    const finished = [...this.jobs.values()].filter((j) => j.state !== "running");
    for (const j of finished.slice(0, Math.max(0, finished.length - this.settings.keepFinished))) this.jobs.delete(j.id);
  }
}
