import type { ChronStore, Recorder } from "../chron/chron-store";
import { newEvent } from "../chron/record";
import { ConflictError, InputError, NotFoundError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import type { LiveWork } from "../lib/pacer";
import type { Serial } from "../lib/serial";
import { actorName, ALL_ORGANIZATIONS, type Actor, type Scope } from "../shared/principal";
import { checkWindow } from "../shared/windows";
import { PooledPolicy, type ActivePolicy, type PolicyEngine } from "./policy-engine";
import { BOUNDS, mayChangePolicy, STARTUP } from "./changes";
import type { PolicyStore } from "./policy-store";
import type { ShadowView } from "./policy-views";
import { shadowReport, type ShadowReport } from "./shadow-report";
import type { TripEvent } from "./evaluation/types";

export interface ShadowDeps {
  store: PolicyStore;
  engine: PolicyEngine;
  record: Recorder;
  logger: Logger;
  /** Chron, read for the shadow report. */
  chron: Pick<ChronStore, "list" | "bounds">;
  /** Live decisions, which the shadow report gives way to. */
  live: LiveWork;
  /** A published version, verified and loaded (PolicyService.load). */
  load(version: number): Promise<ActivePolicy>;
  /** Shared with publishing and activation: shadow changes go one at a time with them. */
  serial: Serial;
  /** A shadow is stopped after this many of its evaluations exceeded the evaluation bounds. */
  tripsToStop: number;
}

/**
 * Shadow mode: a published version evaluated beside the active one on every decision, never
 * enforced; Chron records its result next to the real one, and the report says where they
 * disagreed. A shadow that keeps exceeding the evaluation bounds is stopped.
 */
export class ShadowService {
  private readonly store: PolicyStore;
  private readonly engine: PolicyEngine;
  private readonly record: Recorder;
  private readonly logger: Logger;
  private readonly serial: Serial;

  constructor(private readonly deps: ShadowDeps) {
    ({ store: this.store, engine: this.engine, record: this.record, logger: this.logger, serial: this.serial } = deps);
    this.engine.pool.onTrip((e) => this.tripped(e));
  }

  private load(version: number): Promise<ActivePolicy> {
    return this.deps.load(version);
  }

  /**
   * Shadow mode: `version` is evaluated beside the active one on every decision, never enforced;
   * Chron records its result next to the real one. Verified like an activation before it runs.
   */
  setShadow(version: number, actor: Actor, scope: Scope = ALL_ORGANIZATIONS): Promise<ShadowView> {
    mayChangePolicy(scope);
    return this.serial.run(async () => {
      if (this.engine.active()?.version === version) throw new ConflictError("shadow_is_active", `policy version ${version} is the active version; a shadow must differ from it`);
      const loaded = await this.load(version);
      const since = loaded.activatedAt;
      const previous = this.engine.shadow()?.version ?? null;
      const by = actorName(actor);
      await this.record(
        [
          newEvent({
            type: "policy.shadow_started",
            actor,
            subject: { type: "policy", id: String(version), name: loaded.revision },
            before: { shadow_version: previous },
            after: { shadow_version: version, active_version: this.engine.active()?.version ?? null },
          }),
        ],
        (tx) => this.store.setShadow({ version, since, by }, tx),
      );
      this.engine.setShadow(loaded);
      this.logger.info("policy shadow started", { version, actor });
      return { version, revision: loaded.revision, since: since.toISOString(), set_by: by };
    });
  }

  stopShadow(actor: Actor, scope: Scope = ALL_ORGANIZATIONS): Promise<void> {
    mayChangePolicy(scope);
    return this.serial.run(async () => {
      const state = await this.store.state();
      if (!state.shadow) throw new NotFoundError("no_shadow", "no policy version is being shadowed");
      await this.record(
        [
          newEvent({
            type: "policy.shadow_stopped",
            actor,
            subject: { type: "policy", id: String(state.shadow.version), name: this.engine.shadow()?.revision ?? String(state.shadow.version) },
            before: { shadow_version: state.shadow.version, since: state.shadow.since.toISOString() },
            after: { shadow_version: null },
          }),
        ],
        (tx) => this.store.setShadow(null, tx),
      );
      this.engine.setShadow(null);
      this.logger.info("policy shadow stopped", { version: state.shadow.version, actor });
    });
  }

  /**
   * Where a shadow version disagreed with the decisions made: by default the current shadow since it
   * started; for an earlier shadow, name its version and the time window.
   */
  async shadowReport(q: { version?: number; fromMs?: number; toMs?: number; orgId: string | null; samples: number }): Promise<ShadowReport> {
    const current = (await this.store.state()).shadow;
    const version = q.version ?? current?.version;
    if (version === undefined) throw new NotFoundError("no_shadow", "no policy version is being shadowed; name the version of an earlier shadow, and from when");
    const fromMs = q.fromMs ?? (current?.version === version ? current.since.getTime() : undefined);
    if (fromMs === undefined) throw new InputError("shadow_window_required", `policy version ${version} is not the current shadow; say from when to report (from)`, [{ path: "from", message: "required" }]);
    checkWindow(fromMs, q.toMs, "from", "to");
    return shadowReport(this.deps.chron, { version, fromMs, toMs: q.toMs, orgId: q.orgId ?? undefined, samplesPerGroup: q.samples }, this.deps.live);
  }

  /**
   * An evaluation exceeded the deadline or the memory limit. The active version's decision is then a
   * recorded deny (decision-service.ts); a shadow that keeps doing so is stopped, recorded in Chron
   * and reported in the status, so that it does not keep ending evaluation workers.
   *
   * Trips are counted in the database, by every process on it together: with N processes, the
   * shadow stops at the same count as with one. The process whose trip makes the count reach the
   * limit (exactly one: each increment gives its own count) stops it.
   */
  private tripped(e: TripEvent): void {
    const shadow = this.engine.shadow();
    if (!(shadow instanceof PooledPolicy) || shadow.handle.id !== e.handle) return;
    this.store
      .countShadowTrip(shadow.version)
      .then((trips) => {
        if (trips === this.deps.tripsToStop) this.stopTripped(shadow, trips, e);
      })
      .catch((err: Error) => this.logger.error("could not count the shadow policy's trip", { version: shadow.version, error: err.message }));
  }

  private stopTripped(shadow: PooledPolicy, trips: number, e: TripEvent): void {
    const message = `shadow policy version ${shadow.version} stopped: ${trips} of its evaluations exceeded the evaluation ${e.kind === "timeout" ? "deadline" : "memory limit"} (last: ${Math.round(e.ms)} ms)`;
    void this.serial.run(async () => {
      if (this.engine.shadow() !== shadow) return;
      const at = new Date();
      await this.record(
        [
          newEvent({
            type: "policy.shadow_stopped",
            actor: BOUNDS,
            subject: { type: "policy", id: String(shadow.version), name: shadow.revision },
            reason: message,
            before: { shadow_version: shadow.version },
            after: { shadow_version: null, bounds_exceeded: trips },
          }),
        ],
        async (tx) => {
          await this.store.setShadow(null, tx);
          await this.store.setError(message, at, tx);
        },
      );
      this.engine.setShadow(null);
      this.logger.error("shadow policy stopped: it keeps exceeding the evaluation bounds", { version: shadow.version, trips });
    }).catch((err: Error) => this.logger.error("could not stop the shadow policy", { error: err.message }));
  }

  /** A shadow that no longer verifies is not evaluated; decisions are unaffected either way. */
  /** At start-up: the shadow the database names is evaluated again, if it still verifies. */
  async resume(): Promise<void> {
    const state = await this.store.state();
    if (state.shadow) await this.resumeShadow(state.shadow.version);
  }

  private async resumeShadow(version: number): Promise<void> {
    try {
      this.engine.setShadow(await this.load(version));
    } catch (err) {
      const message = `shadow not evaluated: ${(err as Error).message}`;
      await this.record(
        [newEvent({ type: "policy.shadow_failed", actor: STARTUP, subject: { type: "policy", id: String(version), name: String(version) }, reason: message, before: null, after: null })],
        (tx) => this.store.setError(message, new Date(), tx),
      );
      this.logger.error("shadow policy could not be loaded at start-up", { version, error: (err as Error).message });
    }
  }
}
