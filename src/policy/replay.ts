import { randomUUID } from "node:crypto";
import { scanRecords, type ChronFilter, type ChronStore, type Recorder } from "../chron/chron-store";
import { decisionRef, newEvent, policyOutcome, type DecisionContent } from "../chron/record";
import { ConflictError, NotFoundError, ServiceUnavailableError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import { checkWindow } from "../shared/windows";
import { BACKGROUND, Pacer, type LiveWork, type PaceSettings } from "../lib/pacer";
import { nanosOf, type ActivePolicy } from "./policy-engine";
import { type Actor, actorName } from "../shared/principal";
import { decisionOf, outcomeOf, type PolicyInput } from "./decision-policy";
import type { EvalOutcome } from "./evaluation/types";
import type { HeldSlot, LeaseSlots } from "../db/lease";
import { noneFound, withoutRecords, type FoundChange, type ReplayChange, type ReplayDirection, type ReplayStore, type ReplayView, type SavedReplay } from "./replay-store";

export type { ReplayChange, ReplayView } from "./replay-store";

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
  /** Finished replays kept for reading, in the database (for every process on it). */
  keepFinished: number;
  /** A running replay is saved (progress, records found) at most this often, for the other processes to read. */
  saveEveryMs: number;
  /** A replay still running whose process has not saved it for this long is reported failed: that process stopped. */
  staleMs: number;
  /** A replay is stopped after this many evaluations exceeded the deadline or the memory limit. */
  tripsToStop: number;
  /** Records evaluated at once (in the evaluation workers) between two ticks of the pacer. */
  chunk: number;
}

/** Replays running at once, in every CLAIIM process on the database together. */
export const REPLAY_MAX_RUNNING = 2;

const DEFAULTS: ReplaySettings = { ...BACKGROUND, pageSize: 200, maxRunning: REPLAY_MAX_RUNNING, keepFinished: 50, saveEveryMs: 1000, staleMs: 60_000, tripsToStop: 3, chunk: 32 };

/** A replay stopped because its version keeps exceeding the evaluation bounds. */
class BoundsExceeded extends Error {}

function wasRedacted(d: DecisionContent): boolean {
  return [...(d.erased ?? []), ...(d.masked ?? [])].some((p) => p === "/input" || p.startsWith("/input/"));
}

/** A replay this process runs or ran, and what it has not saved yet. */
interface Job {
  view: ReplayView;
  /** Records found since the last save, and the number the next one found takes. */
  unsaved: FoundChange[];
  found: number;
  savedAtMs: number;
  /** Saves of this replay, one after the other. */
  saving: Promise<void>;
  /** Saved as it ended: from then on the database answers for it, in every process alike. */
  savedEnded: boolean;
}

/**
 * Replays a published version against a window of recorded decisions: what would it have decided
 * on each recorded input, and where would that differ. It changes nothing. It runs in the
 * background in short slices, paced so that live decisions keep their pace (see Pacer).
 *
 * A replay runs in the process asked to start it, which saves it in the database (ReplayStore)
 * as it starts, about once a second while it runs, and when it ends: every process on the
 * database answers for it, and it outlives a restart. The process running it answers from memory,
 * the others from the last save.
 */
export class ReplayRunner {
  private readonly jobs = new Map<string, Job>();
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
    /** Where replays are saved for every process on the database. */
    private readonly store: ReplayStore,
    /** The limit on running replays, held in the database for every process on it (maxRunning slots); without it (service tests), this process's own count. */
    private readonly slots: LeaseSlots | null = null,
  ) {
    this.settings = { ...DEFAULTS, ...settings };
  }

  /** Starts a replay and returns at once, with the replay as it starts; read its progress and result with `get`. */
  async start(req: ReplayRequest, actor: Actor): Promise<ReplayView> {
    checkWindow(req.fromMs, req.toMs, "from", "to");
    if (this.stopping) throw new ServiceUnavailableError("not_ready", "CLAIIM is stopping; replays cannot start");
    const running = [...this.jobs.values()].filter((j) => j.view.state === "running").length + this.starting;
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
    const view: ReplayView = {
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
      ...noneFound(span?.count ?? 0),
    };
    const job: Job = { view, unsaved: [], found: 0, savedAtMs: 0, saving: Promise.resolve(), savedEnded: false };
    // Who looked at what is part of the trail, as for exports: the replay is recorded before it runs.
    const started = this.record([
      newEvent({
        type: "policy.replay_started",
        actor,
        subject: { type: "replay", id: view.id, name: policy.revision },
        organization: null,
        before: null,
        after: { version: view.version, from: view.from, to: view.to, organization_id: req.orgId, decisions: view.progress.total },
      }),
    ]);
    try {
      await started;
      // Saved before it runs: whichever process is asked next for it answers.
      await this.save(job, true);
    } catch (err) {
      policy.release?.();
      await slot?.release();
      throw err;
    }
    this.jobs.set(view.id, job);
    this.forgetOld();
    const startedAs = structuredClone(view);
    const done = this.run(job, policy, filter, span, req.maxRecords)
      .then(
        () => this.finish(job, null),
        (err: Error) => this.finish(job, err),
      )
      .finally(async () => {
        policy.release?.();
        await slot?.release();
        this.slotLost.delete(view.id);
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

  /**
   * A replay, whichever process runs or ran it, seen by a caller confined to `orgId` only when it
   * ran within that organisation: from memory while it runs here (or when its last save failed),
   * else as last saved.
   */
  async find(id: string, orgId: string | null): Promise<ReplayView> {
    const view = this.here(id)?.view ?? this.asSeen(await this.store.get(id));
    if (!view || (orgId !== null && view.organization_id !== orgId)) throw new NotFoundError("replay_not_found", `no replay ${id}`);
    return view;
  }

  /** The replays of every process on the database (those running, and the last keepFinished that ended), newest first. */
  async list(orgId: string | null): Promise<ReplayView[]> {
    const saved = (await this.store.list(orgId, this.settings.keepFinished + this.settings.maxRunning)).map((s) => this.asSeen(s)!);
    const here = [...this.jobs.values()].filter((j) => !j.savedEnded).map((j) => j.view).filter((v) => orgId === null || v.organization_id === orgId);
    const byId = new Map([...saved, ...here].map((v) => [v.id, v]));
    return [...byId.values()].sort((a, b) => (a.started_at < b.started_at ? 1 : a.started_at > b.started_at ? -1 : a.id < b.id ? -1 : 1));
  }

  /** A replay this process answers for from memory: one it runs, or one whose end it could not save. */
  private here(id: string): Job | undefined {
    const job = this.jobs.get(id);
    return job && !job.savedEnded ? job : undefined;
  }

  /** A saved replay as it stands: one still running that its process stopped saving is reported failed. */
  private asSeen(saved: SavedReplay | null): ReplayView | null {
    if (!saved) return null;
    const { view, updatedMs, ageMs } = saved;
    if (view.state !== "running" || ageMs < this.settings.staleMs) return view;
    return {
      ...view,
      state: "failed",
      finished_at: new Date(updatedMs).toISOString(),
      error: `stopped without finishing: the CLAIIM process running it has not saved it since ${new Date(updatedMs).toISOString()} (it stopped, or lost the database)`,
    };
  }

  /**
   * Saves the replay (its counts and the records found since the last save) when it is due, or
   * now (`now`). A save that fails is logged, and what it carried goes with the next one: progress
   * is lost for the other processes only while the database cannot be written.
   */
  private save(job: Job, now = false): Promise<void> {
    if (!now && Date.now() - job.savedAtMs < this.settings.saveEveryMs) return job.saving;
    job.savedAtMs = Date.now();
    const next = job.saving.then(async () => {
      const found = job.unsaved;
      job.unsaved = [];
      try {
        // The view as it is now, without its lists: the records found are saved one by one.
        await this.store.save(withoutRecords(job.view), found);
      } catch (err) {
        job.unsaved = [...found, ...job.unsaved];
        throw err;
      }
    });
    job.saving = next.catch(() => undefined);
    return next;
  }

  private async run(job: Job, policy: ActivePolicy, filter: ChronFilter, span: Awaited<ReturnType<ChronStore["bounds"]>>, maxRecords: number): Promise<void> {
    const pacer = new Pacer(this.live, this.settings);
    // Records evaluated at once: doubling up to settings.chunk while none exceeds the bounds, back to
    // one after one does, so that a version that keeps exceeding them stops at tripsToStop.
    let width = 1;
    for await (const rows of scanRecords(this.chron, filter, this.settings.pageSize, span)) {
      await pacer.tick();
      for (let i = 0; i < rows.length; ) {
        if (this.stopping) throw new Error("stopped: CLAIIM is stopping");
        if (this.slotLost.has(job.view.id)) throw new Error("stopped: its place among the running replays could not be kept (the database did not answer in time)");
        const tripsBefore = job.view.bounds_exceeded;
        const chunk = rows.slice(i, i + width).map((row) => ({ seq: row.seq, d: JSON.parse(row.content) as DecisionContent }));
        i += chunk.length;
        // Each record is evaluated at the time it was decided (time.now_ns), within the same bounds as decisions.
        const outcomes = await Promise.all(chunk.map(({ d }) => (d.input ? policy.evaluate(d.input, nanosOf(d.timestamp)) : null)));
        chunk.forEach(({ seq, d }, k) => this.replayOne(job, policy, seq, d, outcomes[k], maxRecords));
        width = job.view.bounds_exceeded > tripsBefore ? 1 : Math.min(width * 2, this.settings.chunk);
        if (job.view.bounds_exceeded >= this.settings.tripsToStop) {
          const message = `replay ${job.view.id} of policy version ${job.view.version} stopped: ${job.view.bounds_exceeded} evaluations exceeded the evaluation deadline or memory limit`;
          await this.onStopped(job.view, message).catch((err: Error) => this.logger.error("could not record the stopped replay", { id: job.view.id, error: err.message }));
          throw new BoundsExceeded(message);
        }
        await this.save(job).catch((err: Error) => this.logger.warn("could not save a running replay's progress; the next save carries it", { id: job.view.id, error: err.message }));
        await pacer.tick();
      }
    }
  }

  private replayOne(job: Job, policy: ActivePolicy, seq: number, d: DecisionContent, outcome: EvalOutcome | null, maxRecords: number): void {
    const view = job.view;
    view.progress.processed += 1;
    if (!d.input || !outcome) {
      view.skipped += 1;
      return;
    }
    const redacted = wasRedacted(d);
    if (redacted) view.redacted += 1;
    if (!outcome.ok && outcome.kind !== "error") view.bounds_exceeded += 1;
    const result = decisionOf(policy, outcome, d.input as PolicyInput);
    // Compared with what the recorded version answered, before any approval was looked at.
    const recorded = policyOutcome(d);
    const decision = outcomeOf(result);
    if (decision === recorded) {
      view.unchanged += 1;
      return;
    }
    const direction: ReplayDirection = recorded === "allow" ? "allow_to_deny" : decision === "allow" ? "deny_to_allow" : "approval_changes";
    const side = view[direction];
    side.count += 1;
    if (side.records.length >= maxRecords) {
      view.truncated = true;
      return;
    }
    const record: ReplayChange = {
      ...decisionRef(seq, d),
      recorded: { decision: recorded, reasons: d.reasons, policy_version: d.policy.version },
      replayed: { decision, reasons: result.reasons },
      redacted,
    };
    side.records.push(record);
    job.unsaved.push({ n: job.found++, direction, record });
  }

  /** Ends the replay and saves it as it ended (a save that fails is logged: the other processes then report it failed once it is stale). */
  private async finish(job: Job, err: Error | null): Promise<void> {
    const view = job.view;
    view.finished_at = new Date().toISOString();
    view.error = err?.message ?? null;
    view.state = err ? "failed" : "done";
    if (err) this.logger.error("replay failed", { id: view.id, version: view.version, error: err.message });
    else this.logger.info("replay finished", { id: view.id, version: view.version, processed: view.progress.processed, allow_to_deny: view.allow_to_deny.count, deny_to_allow: view.deny_to_allow.count });
    try {
      await this.save(job, true);
      job.savedEnded = true;
      await this.store.prune(this.settings.keepFinished, this.settings.staleMs);
    } catch (e) {
      this.logger.error("could not save a replay as it ended; this process still answers for it", { id: view.id, error: (e as Error).message });
    }
  }

  /** This process keeps in memory the replays it runs, and the last few it ran (those whose last save failed are answered from here). */
  private forgetOld(): void {
    const finished = [...this.jobs.values()].filter((j) => j.view.state !== "running");
    for (const j of finished.slice(0, Math.max(0, finished.length - this.settings.keepFinished))) this.jobs.delete(j.view.id);
  }
}
