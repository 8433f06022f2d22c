import type { ReplayView } from "../../../src/policy/replay";
import { withoutRecords, type FoundChange, type ReplayStore, type SavedReplay } from "../../../src/policy/replay-store";

// Taken before any test can replace Date.now: the database's clock is not the process's.
const machineNow = Date.now.bind(Date);

/** policy_replays and policy_replay_changes in memory, with their keys; `unreachable` makes every call fail, as a database that cannot be reached. */
export class FakeReplayStore implements ReplayStore {
  /** The database's clock, which saves are stamped with and staleness is read on. */
  clock: () => number = machineNow;
  rows = new Map<string, { summary: string; orgId: string | null; state: string; startedMs: number; updatedMs: number }>();
  changes = new Map<string, FoundChange[]>();
  unreachable = false;
  /** The next save commits, and then fails as a connection lost at COMMIT does. */
  loseNextCommit = false;
  saves = 0;
  /** Saves refused while unreachable. */
  refused = 0;

  private reach(): void {
    if (this.unreachable) throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
  }

  async save(view: ReplayView, found: FoundChange[]): Promise<void> {
    if (this.unreachable) this.refused += 1;
    this.reach();
    // As the store does: records carried again replace themselves.
    const held = (this.changes.get(view.id) ?? []).filter((c) => found.length === 0 || c.n < found[0].n);
    const all = [...held, ...structuredClone(found)];
    // The primary key (replay_id, n): a change is stored once.
    if (new Set(all.map((c) => c.n)).size < all.length) throw Object.assign(new Error("Unique constraint failed on (replay_id, n)"), { code: "P2002" });
    this.rows.set(view.id, { summary: JSON.stringify(withoutRecords(view)), orgId: view.organization_id, state: view.state, startedMs: Date.parse(view.started_at), updatedMs: this.clock() });
    this.changes.set(view.id, all);
    this.saves += 1;
    if (this.loseNextCommit) {
      this.loseNextCommit = false;
      throw Object.assign(new Error("Connection terminated unexpectedly"), { code: "ECONNRESET" });
    }
  }

  async get(id: string): Promise<SavedReplay | null> {
    this.reach();
    return this.read(id);
  }

  async list(orgId: string | null, limit: number): Promise<SavedReplay[]> {
    this.reach();
    const ids = [...this.rows.entries()].filter(([, r]) => orgId === null || r.orgId === orgId).sort(([a, x], [b, y]) => y.startedMs - x.startedMs || (a < b ? -1 : 1));
    return ids.slice(0, limit).map(([id]) => this.read(id)!);
  }

  async prune(keep: number, staleMs: number): Promise<number> {
    this.reach();
    const ended = [...this.rows.entries()].filter(([, r]) => r.state !== "running" || r.updatedMs < this.clock() - staleMs).sort(([a, x], [b, y]) => y.startedMs - x.startedMs || (a < b ? -1 : 1));
    const old = ended.slice(keep).map(([id]) => id);
    for (const id of old) {
      this.rows.delete(id);
      this.changes.delete(id);
    }
    return old.length;
  }

  private read(id: string): SavedReplay | null {
    const row = this.rows.get(id);
    if (!row) return null;
    const view = JSON.parse(row.summary) as ReplayView;
    for (const c of [...(this.changes.get(id) ?? [])].sort((a, b) => a.n - b.n)) view[c.direction].records.push(structuredClone(c.record));
    return { view, updatedMs: row.updatedMs, ageMs: this.clock() - row.updatedMs };
  }
}
