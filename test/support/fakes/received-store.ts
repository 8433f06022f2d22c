import type { HeldHead, HeldLine, ReceivedHeadStore } from "../../../src/chron/received-store";
import type { WitnessedHead } from "../../../src/chron/witness";

/** witness_heads in memory, with its keys: one head per size, and each head extended once only. */
export class FakeReceivedHeadStore implements ReceivedHeadStore {
  rows = new Map<string, { tree_size: number; from_size: number; root: string; line: string }[]>();

  async last(log: string): Promise<HeldHead | null> {
    const rows = this.rows.get(log) ?? [];
    const top = rows.reduce<(typeof rows)[number] | null>((a, r) => (!a || r.tree_size > a.tree_size ? r : a), null);
    return top ? { tree_size: top.tree_size, root: top.root } : null;
  }

  async extend(log: string, from: number, heads: WitnessedHead[]): Promise<boolean> {
    const rows = this.rows.get(log) ?? [];
    const added = heads.map((h, i) => ({ tree_size: h.tree_size, from_size: i === 0 ? from : heads[i - 1].tree_size, root: h.root, line: JSON.stringify(h) }));
    const all = [...rows, ...added];
    if (new Set(all.map((r) => r.tree_size)).size < all.length || new Set(all.map((r) => r.from_size)).size < all.length) return false;
    this.rows.set(log, all);
    return true;
  }

  async lines(log: string, after: number, limit: number): Promise<HeldLine[]> {
    return (this.rows.get(log) ?? [])
      .filter((r) => r.tree_size > after)
      .sort((a, b) => a.tree_size - b.tree_size)
      .slice(0, limit)
      .map((r) => ({ tree_size: r.tree_size, root: r.root, line: r.line }));
  }
}
