// The approvals this process holds in memory: every open approval, and closed ones kept a while so
// that using them gets their precise reason. The decision path reads approvals from here only.
import { OPEN_STATUSES, type Approval } from "./model";

export const isOpen = (a: Approval) => OPEN_STATUSES.includes(a.status);

/** What is being done to an approval right now. */
export type Claim = "spend" | "decide" | "expire";

/**
 * WARNING: every approval is one object, shared by everyone who holds it; changes are applied to it
 * with `change` once committed, so that the open index, long-polls and readers see one truth.
 * A claim is taken synchronously, before anything is awaited, so that two requests of this process
 * can never both change one approval.
 */
export class HeldApprovals {
  private readonly approvals = new Map<string, Approval>();
  /** The open ones, by agent: what the decision path and the expiry timer look through. */
  private readonly openByAgent = new Map<string, Set<Approval>>();
  private readonly claims = new Map<string, Claim>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private waiting = 0;

  get(id: string): Approval | undefined {
    return this.approvals.get(id);
  }

  /** Every approval held, newest first. */
  newestFirst(): Approval[] {
    return [...this.approvals.values()].sort((x, y) => y.createdAt.getTime() - x.createdAt.getTime() || y.id.localeCompare(x.id));
  }

  /** The open approvals of one agent. */
  openOf(agentId: string): Approval[] {
    return [...(this.openByAgent.get(agentId) ?? [])];
  }

  /** Every open approval. */
  open(): Approval[] {
    return [...this.openByAgent.values()].flatMap((set) => [...set]);
  }

  /** Holds an approval in memory, indexed as open when it is. */
  hold(a: Approval): void {
    this.approvals.set(a.id, a);
    this.index(a);
  }

  /** Applies a committed change to the approval held in memory, and keeps the open index right. */
  change(a: Approval, patch: Partial<Approval>): void {
    Object.assign(a, patch);
    this.index(a);
  }

  /** Forgets closed approvals that expired before `before`, unless something still uses them. */
  forgetClosed(before: number): void {
    for (const a of [...this.approvals.values()]) {
      if (!isOpen(a) && a.expiresAt.getTime() < before && !this.claims.has(a.id) && !this.waiters.has(a.id)) this.approvals.delete(a.id);
    }
  }

  claimOf(id: string): Claim | undefined {
    return this.claims.get(id);
  }

  claim(id: string, what: Claim): void {
    this.claims.set(id, what);
  }

  /** Ends a claim, and answers whoever waits on the approval. */
  release(id: string): void {
    this.claims.delete(id);
    this.wake(id);
  }

  /**
   * Waits until the approval changes, `ms` pass or the signal aborts. Returns false at once when
   * `maxWaiters` already wait.
   */
  async waitFor(id: string, ms: number, maxWaiters: number, signal?: AbortSignal): Promise<boolean> {
    if (this.waiting >= maxWaiters || signal?.aborted) return false;
    await new Promise<void>((resolve) => {
      let set = this.waiters.get(id);
      if (!set) this.waiters.set(id, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        if (set.delete(done)) this.waiting -= 1;
        if (set.size === 0 && this.waiters.get(id) === set) this.waiters.delete(id);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
      this.waiting += 1;
      signal?.addEventListener("abort", done, { once: true });
    });
    return true;
  }

  /** Answers every wait now. */
  wakeAll(): void {
    for (const id of [...this.waiters.keys()]) this.wake(id);
  }

  stats(): { held: number; open: number; waiting: number } {
    let open = 0;
    for (const set of this.openByAgent.values()) open += set.size;
    return { held: this.approvals.size, open, waiting: this.waiting };
  }

  private wake(id: string): void {
    for (const done of [...(this.waiters.get(id) ?? [])]) done();
  }

  private index(a: Approval): void {
    let set = this.openByAgent.get(a.agentId);
    if (isOpen(a)) {
      if (!set) this.openByAgent.set(a.agentId, (set = new Set()));
      set.add(a);
    } else if (set?.delete(a) && set.size === 0) this.openByAgent.delete(a.agentId);
  }
}
