import { createHash, hash } from "node:crypto";

// Merkle trees as RFC 6962 / RFC 9162 (Certificate Transparency) define them, over Chron's record
// hashes: leaf = SHA-256(0x00 || record hash), node = SHA-256(0x01 || left || right).

const LEAF = Buffer.from([0]);
const NODE = Buffer.from([1]);

// One-shot crypto.hash: a microsecond less per hash than a Hash object, on every record appended and verified.
export function leafHash(recordHash: string): Buffer {
  return hash("sha256", Buffer.concat([LEAF, Buffer.from(recordHash, "hex")]), "buffer");
}

export function nodeHash(left: Buffer, right: Buffer): Buffer {
  return hash("sha256", Buffer.concat([NODE, left, right]), "buffer");
}

export const EMPTY_ROOT = createHash("sha256").digest();

/**
 * The right edge of a growing tree: one perfect subtree per set bit of its size. Appending costs
 * O(1) amortised and the root O(log n), so the Chron writer's checkpoints can sign roots as the
 * chain grows, holding log2(n) hashes.
 */
export class MerkleFrontier {
  size = 0;
  private nodes: (Buffer | undefined)[] = [];

  /** The frontier as text, to be stored with a checkpoint: {size, nodes: [hex or null, by level]}. */
  serialize(): string {
    return JSON.stringify({ size: this.size, nodes: this.nodes.map((n) => n?.toString("hex") ?? null) });
  }

  static parse(text: string): MerkleFrontier {
    const { size, nodes } = JSON.parse(text) as { size: number; nodes: (string | null)[] };
    const f = new MerkleFrontier();
    f.size = size;
    f.nodes = nodes.map((n) => (n ? Buffer.from(n, "hex") : undefined));
    if (f.nodes.some((n, level) => (n !== undefined) !== Boolean((size >> level) & 1))) throw new Error("a Merkle frontier that does not fit its size");
    return f;
  }

  /** The perfect subtrees it holds, left to right: [level, node]. */
  subtrees(): [number, Buffer][] {
    const out: [number, Buffer][] = [];
    for (let level = this.nodes.length - 1; level >= 0; level--) if (this.nodes[level]) out.push([level, this.nodes[level]!]);
    return out;
  }

  append(recordHash: string): void {
    let h = leafHash(recordHash);
    let level = 0;
    for (let n = this.size; n & 1; n >>= 1, level++) {
      h = nodeHash(this.nodes[level]!, h);
      this.nodes[level] = undefined;
    }
    this.nodes[level] = h;
    this.size += 1;
  }

  root(): string {
    let acc: Buffer | undefined;
    for (const node of this.nodes) if (node) acc = acc ? nodeHash(node, acc) : node;
    return (acc ?? EMPTY_ROOT).toString("hex");
  }
}

/**
 * A whole tree, level by level (the last node of an odd level is carried up unchanged, which
 * yields RFC 6962's tree), for inclusion proofs. It holds about 2n hashes: 64 MiB per million.
 */
/** How many hashes are computed between two chances to give way (see MerkleTree.build). */
const HASHES_PER_STEP = 4096;

/**
 * The levels of the tree, bottom up. A generator, so that the same code builds a tree at once
 * (MerkleTree.of) or in steps that let other work run in between (MerkleTree.build).
 */
function* levelsOf(recordHashes: string[], prefix: MerkleFrontier): Generator<void, (Buffer | undefined)[][]> {
  const size = prefix.size + recordHashes.length;
  const leaves = new Array<Buffer | undefined>(size);
  for (let i = 0; i < recordHashes.length; i++) {
    leaves[prefix.size + i] = leafHash(recordHashes[i]);
    if (i % HASHES_PER_STEP === HASHES_PER_STEP - 1) yield;
  }
  const levels: (Buffer | undefined)[][] = [leaves];
  for (let width = size; width > 1; ) {
    width = Math.ceil(width / 2);
    levels.push(new Array<Buffer | undefined>(width));
  }
  // Each perfect subtree of the prefix sits, aligned, at its own level.
  let offset = 0;
  for (const [level, node] of prefix.subtrees()) {
    levels[level][offset >> level] = node;
    offset += 1 << level;
  }
  let hashed = 0;
  for (let l = 0; l + 1 < levels.length; l++) {
    const below = levels[l];
    for (let i = 0; i < below.length; i += 2) {
      if (levels[l + 1][i >> 1] !== undefined) continue;
      if (i + 1 >= below.length) levels[l + 1][i >> 1] = below[i];
      else if (below[i] && below[i + 1]) {
        levels[l + 1][i >> 1] = nodeHash(below[i]!, below[i + 1]!);
        if (++hashed % HASHES_PER_STEP === 0) yield;
      }
    }
  }
  return levels;
}

export class MerkleTree {
  private constructor(private readonly levels: (Buffer | undefined)[][]) {}

  /**
   * `recordHashes` are the leaves after `prefix`: when records before them were pruned, the
   * frontier stored with the retention checkpoint stands for them. Proofs are then available for
   * the leaves given, which is all that is left to prove.
   */
  static of(recordHashes: string[], prefix: MerkleFrontier = new MerkleFrontier()): MerkleTree {
    const steps = levelsOf(recordHashes, prefix);
    for (;;) {
      const step = steps.next();
      if (step.done) return new MerkleTree(step.value);
    }
  }

  /** The same tree, built in steps with `giveWay` awaited in between: a million leaves take seconds. */
  static async build(recordHashes: string[], prefix: MerkleFrontier, giveWay: () => Promise<void>): Promise<MerkleTree> {
    const steps = levelsOf(recordHashes, prefix);
    for (;;) {
      const step = steps.next();
      if (step.done) return new MerkleTree(step.value);
      await giveWay();
    }
  }

  get size(): number {
    return this.levels[0].length;
  }

  root(): string {
    if (this.size === 0) return EMPTY_ROOT.toString("hex");
    const top = this.levels[this.levels.length - 1][0];
    if (!top) throw new Error("the tree's root is not known");
    return top.toString("hex");
  }

  /** The audit path of leaf `index` (RFC 9162 §2.1.3.1), bottom up. */
  proof(index: number): string[] {
    const path: string[] = [];
    for (let level = 0, i = index; level < this.levels.length - 1; level++, i >>= 1) {
      const sibling = i ^ 1;
      if (sibling < this.levels[level].length) {
        const node = this.levels[level][sibling];
        if (!node) throw new Error(`no proof for leaf ${index}: it lies in the pruned part of the tree`);
        path.push(node.toString("hex"));
      }
    }
    return path;
  }
}

/** RFC 9162 §2.1.3.2: does `path` prove that leaf `index` with this record hash is in the tree of `size` with `root`? */
export function verifyInclusion(recordHash: string, index: number, size: number, path: string[], root: string): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leafHash(recordHash);
  for (const hex of path) {
    if (!/^[0-9a-f]{64}$/.test(hex) || sn === 0) return false;
    const p = Buffer.from(hex, "hex");
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && r.toString("hex") === root;
}

/** The largest power of two below n (n > 1). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * RFC 9162 §2.1.4.1: the consistency proof between the tree of the first `prefix.size` leaves and
 * the tree that adds `after` (record hashes of the leaves that follow), bottom up.
 *
 * Every node of such a proof is either one of the perfect subtrees the smaller tree's frontier
 * holds, or the root of a range that lies wholly among the added leaves: so the proof needs only
 * the frontier at the first size (stored with each checkpoint) and the hashes after it, never the
 * leaves before, which may have been pruned. Cost: O(added leaves).
 */
export function consistencyProof(prefix: MerkleFrontier, after: string[]): string[] {
  const m = prefix.size;
  const n = m + after.length;
  if (m === 0 || m === n) return [];
  const known = new Map<string, Buffer>();
  let offset = 0;
  for (const [level, node] of prefix.subtrees()) {
    known.set(`${offset}:${1 << level}`, node);
    offset += 1 << level;
  }
  const leaves = after.map(leafHash);
  // The root of leaves lo..hi-1, all of them among the added ones (RFC 6962 MTH).
  const mth = (lo: number, hi: number): Buffer => {
    if (hi - lo === 1) return leaves[lo - m];
    const k = splitPoint(hi - lo);
    return nodeHash(mth(lo, lo + k), mth(lo + k, hi));
  };
  const old = (lo: number, hi: number): Buffer => {
    const node = known.get(`${lo}:${hi - lo}`);
    if (!node) throw new Error(`no frontier node for leaves ${lo}..${hi - 1}`);
    return node;
  };
  const sub = (lo: number, hi: number, whole: boolean): Buffer[] => {
    if (m === hi) return whole ? [] : [old(lo, hi)];
    const k = splitPoint(hi - lo);
    if (m - lo <= k) return [...sub(lo, lo + k, whole), mth(lo + k, hi)];
    return [...sub(lo + k, hi, false), old(lo, lo + k)];
  };
  return sub(0, n, true).map((b) => b.toString("hex"));
}

/** RFC 9162 §2.1.4.2: does `proof` show that the tree of `second` leaves with `secondRoot` extends the tree of `first` leaves with `firstRoot`? */
export function verifyConsistency(first: number, second: number, proof: string[], firstRoot: string, secondRoot: string): boolean {
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(second) || first < 0 || first > second) return false;
  if (!Array.isArray(proof) || proof.some((h) => typeof h !== "string" || !/^[0-9a-f]{64}$/.test(h))) return false;
  if (first === 0) return proof.length === 0;
  if (first === second) return proof.length === 0 && firstRoot === secondRoot;
  const path = (first & (first - 1)) === 0 ? [firstRoot, ...proof] : [...proof];
  if (path.length === 0 || !/^[0-9a-f]{64}$/.test(path[0])) return false;
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer = Buffer.from(path[0], "hex");
  let sr = fr;
  for (const hex of path.slice(1)) {
    if (sn === 0) return false;
    const c = Buffer.from(hex, "hex");
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.toString("hex") === firstRoot && sr.toString("hex") === secondRoot;
}
