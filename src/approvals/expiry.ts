// Expiry of open approvals: one timer, set for the next approval due, that records each expiry in
// Chron and forgets closed approvals once kept long enough.
import type { Recorder } from "../chron/chron-store";
import type { Logger } from "../lib/logger";
import { SYSTEM } from "../shared/principal";
import { ApprovalStateConflict, type ApprovalStore } from "./approval-store";
import { isOpen, type HeldApprovals } from "./held";
import { OPEN_STATUSES, type Approval } from "./model";
import { approvalEvent, type Directory } from "./views";

export interface ExpiryDeps {
  held: HeldApprovals;
  store: ApprovalStore;
  record: Recorder;
  directory: Directory;
  logger: Logger;
  /** How long a closed approval stays in memory after its expiry. */
  keepClosedSeconds: number;
  /** Reads an approval from the database again, after a conditional update found it changed. */
  refresh(id: string): Promise<void>;
}

export class ApprovalExpiry {
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  /** After a failed expiry (Chron down), the sweep waits until then before it tries again. */
  private retryAt = 0;
  private lastForgetAt = 0;
  private stopped = false;

  constructor(private readonly deps: ExpiryDeps) {}

  /** Sets the timer for the next expiry among open approvals. */
  arm(): void {
    if (this.stopped) return;
    const { held } = this.deps;
    let next = Infinity;
    for (const a of held.open()) if (!held.claimOf(a.id)) next = Math.min(next, a.expiresAt.getTime());
    if (next === Infinity) return;
    next = Math.max(next, this.retryAt);
    if (this.timer && this.timerAt <= next) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = next;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.timerAt = Infinity;
        void this.sweep();
      },
      Math.min(Math.max(0, next - Date.now()), 2 ** 31 - 1),
    );
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Expires (and records) every open approval whose time is up, and forgets closed ones kept long enough. */
  private async sweep(): Promise<void> {
    const { held } = this.deps;
    const now = Date.now();
    const due = held.open().filter((a) => a.expiresAt.getTime() <= now && !held.claimOf(a.id));
    for (const a of due) {
      if (this.stopped) return;
      if (isOpen(a) && !held.claimOf(a.id)) await this.expire(a);
    }
    // Forgetting walks every approval held, so it runs at most once a minute.
    if (now - this.lastForgetAt >= 60_000) {
      this.lastForgetAt = now;
      held.forgetClosed(now - this.deps.keepClosedSeconds * 1000);
    }
    this.arm();
  }

  private async expire(a: Approval): Promise<void> {
    const { held } = this.deps;
    held.claim(a.id, "expire");
    try {
      const event = approvalEvent(this.deps.directory, a, "approval.expired", SYSTEM, { status: a.status }, { status: "expired", expires_at: a.expiresAt.toISOString() });
      await this.deps.record([event], (tx) => this.deps.store.transition(a.id, OPEN_STATUSES, { status: "expired" }, tx));
      held.change(a, { status: "expired" });
      this.deps.logger.info("approval expired", { approval_id: a.id });
    } catch (err) {
      if (err instanceof ApprovalStateConflict) await this.deps.refresh(a.id).catch(() => undefined);
      else {
        // Not recorded, so not expired in the database; decisions refuse it by its time all the same.
        this.retryAt = Date.now() + 5000;
        this.deps.logger.error("approval expiry not recorded; will try again", { approval_id: a.id, error: (err as Error).message });
      }
    } finally {
      held.release(a.id);
    }
  }
}
