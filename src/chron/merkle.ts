import { createHash } from "node:crypto";

// Merkle trees as RFC 6962 / RFC 9162 (Certificate Transparency) define them, over Chron's record
// hashes: leaf = SHA-256(0x00 || record hash), node = SHA-256(0x01 || left || right).

const LEAF = Buffer.from([0]);
const NODE = Buffer.from([1]);

export function leafHash(recordHash: string): Buffer {
  return createHash("sha256").update(LEAF).update(Buffer.from(recordHash, "hex")).digest();
}

export function nodeHash(left: Buffer, right: Buffer): Buffer {
  return createHash("sha256").update(NODE).update(left).update(right).digest();
}

export const EMPTY_ROOT = createHash("sha256").digest();

/**
 * The right edge of a growing tree: one perfect subtree per set bit of its size. Appending costs
 * O(1) amortised and the root O(log n), so the Chron writer's checkpoints can sign roots as the
 * chain grows, holding log2(n) hashes.
 */
export class MerkleFrontier {
  size = 0;
  private readonly nodes: (Buffer | undefined)[] = [];

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
export class MerkleTree {
  private readonly levels: Buffer[][];

  constructor(recordHashes: string[]) {
    let level = recordHashes.map(leafHash);
    this.levels = [level];
    while (level.length > 1) {
      const up: Buffer[] = [];
      for (let i = 0; i < level.length; i += 2) up.push(i + 1 < level.length ? nodeHash(level[i], level[i + 1]) : level[i]);
      this.levels.push(up);
      level = up;
    }
  }

  get size(): number {
    return this.levels[0].length;
  }

  root(): string {
    return (this.levels[this.levels.length - 1][0] ?? EMPTY_ROOT).toString("hex");
  }

  /** The audit path of leaf `index` (RFC 9162 §2.1.3.1), bottom up. */
  proof(index: number): string[] {
    const path: string[] = [];
    for (let level = 0, i = index; level < this.levels.length - 1; level++, i >>= 1) {
      const sibling = i ^ 1;
      if (sibling < this.levels[level].length) path.push(this.levels[level][sibling].toString("hex"));
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
