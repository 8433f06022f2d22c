import type { Tx } from "../../../src/db/database";
import { ChronConflictError, IdempotencyKeyTaken, type Checkpoint, type ChronFilter, type ChronLink, type ChronStore, type DecisionCount, type Effect, type EventCount } from "../../../src/chron/chron-store";
import type { ChainHead, ChronRow } from "../../../src/chron/record";
import type { Transactional } from "./transactional";

/**
 * In-memory Chron for service tests. `failNext` makes the next append fail like a dead database.
 * An append with an effect is a transaction over the stores that joined it (`joins`): if the
 * effect or the insert fails, every one of them is put back as it was, as a database rolls back.
 * Like the database, it holds each seq and each id once, and offers no way to change or delete a
 * row but retention's prune (tests that tamper with `rows` play the database's owner).
 */
export class FakeChronStore implements ChronStore {
  rows: ChronRow[] = [];
  checkpointRows: Checkpoint[] = [];
  failNext: Error | null = null;
  /** Rows this store cannot hold: an append that carries one fails whole, as a database refuses a statement. */
  refuses: ((row: ChronRow) => boolean) | null = null;
  appendCalls = 0;
  private participants: Transactional[] = [];

  /** The stores whose writes an effect's transaction covers. */
  joins(...stores: Transactional[]): this {
    this.participants.push(...stores);
    return this;
  }

  async head(): Promise<ChainHead | null> {
    const last = this.rows[this.rows.length - 1];
    return last ? { seq: last.seq, hash: last.hash } : null;
  }

  /** The effect runs first, then the head is read and the rows built on it are inserted; either failing undoes both. */
  async append(build: (head: ChronRow | null) => ChronRow[], effect?: Effect): Promise<ChronRow[]> {
    this.appendCalls += 1;
    if (this.failNext) {
      const err = this.failNext;
      this.failNext = null;
      throw err;
    }
    const saved = effect ? this.participants.map((p) => p.snapshot()) : [];
    try {
      if (effect) await effect(undefined as unknown as Tx);
      const last = this.rows[this.rows.length - 1];
      const rows = build(last ? { ...last } : null);
      if (this.refuses && rows.some(this.refuses)) throw new Error('invalid byte sequence for encoding "UTF8": 0x00');
      const seqs = new Set(this.rows.map((r) => r.seq));
      const ids = new Set(this.rows.map((r) => r.id));
      if (rows.some((r) => seqs.has(r.seq))) throw new ChronConflictError("seq taken");
      if (rows.some((r) => ids.has(r.id))) throw Object.assign(new Error("UNIQUE constraint failed: chron_records.id"), { code: "SQLITE_CONSTRAINT_UNIQUE" });
      const claims = new Set(this.rows.filter((r) => r.idempotencyKey).map((r) => `${r.agentId}\0${r.idempotencyKey}`));
      for (const r of rows) {
        if (!r.idempotencyKey) continue;
        const claim = `${r.agentId}\0${r.idempotencyKey}`;
        if (claims.has(claim)) throw new IdempotencyKeyTaken("UNIQUE constraint failed: chron_records.agent_id, chron_records.idempotency_key");
        claims.add(claim);
      }
      this.rows.push(...rows.map((r) => ({ ...r })));
      return rows;
    } catch (err) {
      this.participants.forEach((p, i) => p.restore(saved[i]));
      throw err;
    }
  }

  async list(filter: ChronFilter, afterSeq: number, limit: number, order: "asc" | "desc" = "asc"): Promise<ChronRow[]> {
    return this.rows
      .filter(
        (r) =>
          r.seq > afterSeq &&
          (filter.fromSeq === undefined || r.seq >= filter.fromSeq) &&
          (filter.toSeq === undefined || r.seq <= filter.toSeq) &&
          (filter.kind === undefined || r.kind === filter.kind) &&
          (filter.orgId === undefined || r.orgId === filter.orgId) &&
          (filter.agentId === undefined || r.agentId === filter.agentId) &&
          (filter.ownerId === undefined || r.ownerId === filter.ownerId) &&
          (filter.decision === undefined || r.decision === filter.decision) &&
          (filter.action === undefined || r.action === filter.action) &&
          (filter.policyVersion === undefined || r.policyVersion === filter.policyVersion) &&
          (filter.fromMs === undefined || r.tsMs >= filter.fromMs) &&
          (filter.toMs === undefined || r.tsMs < filter.toMs),
      )
      .sort((a, b) => (order === "asc" ? a.seq - b.seq : b.seq - a.seq))
      .slice(0, limit);
  }

  async claimOf(agentId: string, key: string): Promise<ChronRow | null> {
    const row = this.rows.find((r) => r.agentId === agentId && r.idempotencyKey === key);
    return row ? { ...row } : null;
  }

  async links(afterSeq: number, upTo: number, limit: number): Promise<ChronLink[]> {
    return (await this.list({ toSeq: upTo }, afterSeq, limit)).map(({ seq, prevHash, hash, tag }) => ({ seq, prevHash, hash, tag }));
  }

  async latest(filter: ChronFilter, limit: number): Promise<ChronRow[]> {
    return (await this.list(filter, 0, Number.MAX_SAFE_INTEGER)).slice(-limit);
  }

  async bounds(filter: ChronFilter): Promise<{ first: number; last: number; count: number } | null> {
    const rows = await this.list(filter, 0, Number.MAX_SAFE_INTEGER);
    return rows.length ? { first: rows[0].seq, last: rows[rows.length - 1].seq, count: rows.length } : null;
  }

  async insertCheckpoint(c: Checkpoint): Promise<void> {
    if (this.checkpointRows.some((x) => x.seq === c.seq)) throw new ChronConflictError("checkpoint exists");
    this.checkpointRows.push({ ...c });
    this.checkpointRows.sort((a, b) => a.seq - b.seq);
  }

  async checkpoints(afterSeq: number, limit: number): Promise<Checkpoint[]> {
    return this.checkpointRows.filter((c) => c.seq > afterSeq).slice(0, limit);
  }

  async lastCheckpoint(): Promise<Checkpoint | null> {
    return this.checkpointAtOrBefore(Number.MAX_SAFE_INTEGER);
  }

  async checkpointAtOrBefore(seq: number): Promise<Checkpoint | null> {
    return this.checkpointRows.filter((c) => c.seq <= seq).pop() ?? null;
  }

  async decisionCounts(filter: ChronFilter): Promise<DecisionCount[]> {
    const counts = new Map<string, DecisionCount>();
    for (const r of await this.list({ ...filter, kind: "decision" }, 0, Number.MAX_SAFE_INTEGER)) {
      const day = new Date(r.tsMs).toISOString().slice(0, 10);
      const key = JSON.stringify([day, r.agentId, r.ownerId, r.action, r.policyVersion, r.decision]);
      const c = counts.get(key) ?? { day, agentId: r.agentId, ownerId: r.ownerId, action: r.action, policyVersion: r.policyVersion, decision: r.decision!, count: 0 };
      c.count += 1;
      counts.set(key, c);
    }
    return [...counts.values()];
  }

  async eventCounts(filter: ChronFilter, types: readonly string[]): Promise<EventCount[]> {
    const counts = new Map<string, EventCount>();
    for (const r of await this.list({ ...filter, kind: "event" }, 0, Number.MAX_SAFE_INTEGER)) {
      if (!types.includes(r.action!)) continue;
      const day = new Date(r.tsMs).toISOString().slice(0, 10);
      const c = counts.get(`${day} ${r.action}`) ?? { day, type: r.action!, count: 0 };
      c.count += 1;
      counts.set(`${day} ${r.action}`, c);
    }
    return [...counts.values()];
  }

  async prune(upToSeq: number): Promise<number> {
    const before = this.rows.length;
    this.rows = this.rows.filter((r) => r.seq > upToSeq);
    this.checkpointRows = this.checkpointRows.filter((c) => c.seq >= upToSeq);
    return before - this.rows.length;
  }

  async decisionsByPolicyVersion(orgId?: string): Promise<{ version: number | null; count: number }[]> {
    const counts = new Map<number | null, number>();
    for (const r of this.rows) if (r.kind === "decision" && (orgId === undefined || r.orgId === orgId)) counts.set(r.policyVersion, (counts.get(r.policyVersion) ?? 0) + 1);
    return [...counts.entries()].map(([version, count]) => ({ version, count }));
  }
}
