import { createHash } from "node:crypto";
import { consistencyProof, EMPTY_ROOT, MerkleFrontier, MerkleTree, verifyConsistency, verifyInclusion } from "../../src/chron/merkle";
import { buildReference, reference } from "../support/merkle-reference";

const hashes = (n: number, salt = "") => Array.from({ length: n }, (_, i) => createHash("sha256").update(`record ${salt}${i}`).digest("hex"));

/** A small seeded generator (mulberry32), so that a failing random tree can be made again from its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function frontierOf(leaves: string[]): MerkleFrontier {
  const f = new MerkleFrontier();
  for (const h of leaves) f.append(h);
  return f;
}

/** One proof changed the ways an attacker or a bug would: a node flipped, dropped, added, or moved. */
function corruptions(proof: string[], other: string): string[][] {
  const out: string[][] = [[...proof, other], proof.slice(1)];
  if (proof.length) {
    out.push(proof.slice(0, -1));
    const flipped = [...proof];
    flipped[0] = (flipped[0][0] === "0" ? "1" : "0") + flipped[0].slice(1);
    out.push(flipped);
    out.push([other, ...proof]);
  }
  if (proof.length > 1) out.push([proof[1], proof[0], ...proof.slice(2)]);
  return out;
}

describe("Merkle trees against the reference implementation (github.com/transparency-dev/merkle)", () => {
  beforeAll(() => buildReference(), 180_000);

  const SEED = Number(process.env.MERKLE_SEED ?? Date.now() % 1_000_000);
  const next = random(SEED);
  // Sizes around every power of two up to 256, and random ones up to 1100.
  const sizes = [...new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, ...Array.from({ length: 12 }, () => 1 + Math.floor(next() * 1100))])].sort((a, b) => a - b);
  const leaves = hashes(sizes[sizes.length - 1], `seed ${SEED} `);
  // The frontier after every prefix, built once: a consistency proof starts from one.
  const prefixes: string[] = [];
  const rootsBySize: string[] = [];
  for (const f = new MerkleFrontier(); ; f.append(leaves[f.size])) {
    prefixes.push(f.serialize());
    rootsBySize.push(f.root());
    if (f.size === leaves.length) break;
  }
  const frontierAt = (m: number) => MerkleFrontier.parse(prefixes[m]);
  const rootAt = (n: number) => rootsBySize[n];

  test(`roots, inclusion proofs and consistency proofs equal the reference's for random trees (seed ${SEED})`, () => {
    const pairs: [number, number][] = [];
    const inclusion: [number, number][] = [];
    for (const n of sizes) {
      for (let m = 0; m <= n; m += n <= 70 ? 1 : 1 + Math.floor(next() * (n / 20))) pairs.push([m, n]);
      pairs.push([n, n], [n - 1, n]);
      for (let i = 0; i < n; i += n <= 70 ? 1 : 1 + Math.floor(next() * (n / 15))) inclusion.push([i, n]);
      inclusion.push([n - 1, n]);
    }
    const expected = reference({ leaves, roots: sizes, inclusion, consistency: pairs });
    const frontier = new MerkleFrontier();
    const roots: string[] = [];
    for (const n of sizes) {
      while (frontier.size < n) frontier.append(leaves[frontier.size]);
      roots.push(frontier.root());
    }
    expect(roots).toEqual(expected.roots);
    const trees = new Map(sizes.map((n) => [n, MerkleTree.of(leaves.slice(0, n))]));
    expect(sizes.map((n) => trees.get(n)!.root())).toEqual(expected.roots);
    // Compared as text, and the differing cases listed: jest's deep equality is slow on thousands of proofs.
    const differing = <T>(cases: T[], ours: string[][], theirs: string[][]) => cases.filter((_, k) => ours[k].join() !== theirs[k].join());
    expect(inclusion.length).toBe(expected.inclusion.length);
    expect(differing(inclusion, inclusion.map(([i, n]) => trees.get(n)!.proof(i)), expected.inclusion)).toEqual([]);
    // A consistency proof needs only the frontier at the first size and the record hashes after it.
    expect(pairs.length).toBe(expected.consistency.length);
    expect(differing(pairs, pairs.map(([m, n]) => consistencyProof(frontierAt(m), leaves.slice(m, n))), expected.consistency)).toEqual([]);
    expect(pairs.filter(([m, n], k) => !verifyConsistency(m, n, expected.consistency[k], rootAt(m), rootAt(n)))).toEqual([]);
    expect(inclusion.filter(([i, n], k) => !verifyInclusion(leaves[i], i, n, expected.inclusion[k], trees.get(n)!.root()))).toEqual([]);
  });

  test(`the verifiers accept and refuse exactly what the reference accepts and refuses (seed ${SEED})`, () => {
    const checks: { size1: number; size2: number; proof: string[]; root1: string; root2: string }[] = [];
    const inclusionChecks: { index: number; size: number; leaf: string; proof: string[]; root: string }[] = [];
    expect(rootAt(0)).toBe(EMPTY_ROOT.toString("hex"));
    const other = leaves[leaves.length - 1];
    for (let k = 0; k < 150; k++) {
      const n = sizes[Math.floor(next() * sizes.length)];
      const m = Math.floor(next() * (n + 1));
      const proof = consistencyProof(frontierAt(m), leaves.slice(m, n));
      const [r1, r2] = [rootAt(m), rootAt(n)];
      checks.push({ size1: m, size2: n, proof, root1: r1, root2: r2 });
      for (const bad of corruptions(proof, other)) checks.push({ size1: m, size2: n, proof: bad, root1: r1, root2: r2 });
      if (m > 1) checks.push({ size1: m - 1, size2: n, proof, root1: rootAt(m - 1), root2: r2 });
      if (m < n) checks.push({ size1: m, size2: n, proof, root1: r1, root2: rootAt(n - 1) }, { size1: m + 1, size2: n, proof, root1: rootAt(m + 1), root2: r2 });
      checks.push({ size1: m, size2: n, proof, root1: r2, root2: r1 });
      if (n > 0) {
        const i = Math.floor(next() * n);
        const tree = MerkleTree.of(leaves.slice(0, n));
        const path = tree.proof(i);
        inclusionChecks.push({ index: i, size: n, leaf: leaves[i], proof: path, root: r2 });
        for (const bad of corruptions(path, other)) inclusionChecks.push({ index: i, size: n, leaf: leaves[i], proof: bad, root: r2 });
        inclusionChecks.push({ index: i, size: n, leaf: other, proof: path, root: r2 });
        if (i + 1 < n) inclusionChecks.push({ index: i + 1, size: n, leaf: leaves[i], proof: path, root: r2 });
        inclusionChecks.push({ index: i, size: n + 1, leaf: leaves[i], proof: path, root: r2 });
      }
    }
    const expected = reference({ leaves: [], check_consistency: checks, check_inclusion: inclusionChecks });
    const ours = checks.map((c) => verifyConsistency(c.size1, c.size2, c.proof, c.root1, c.root2));
    const disagreements = checks.filter((_, k) => ours[k] !== expected.check_consistency[k]).map((c) => ({ ...c, ours: ours[checks.indexOf(c)] }));
    expect(disagreements).toEqual([]);
    expect(expected.check_consistency.filter(Boolean).length).toBeGreaterThan(150);
    expect(expected.check_consistency.filter((ok) => !ok).length).toBeGreaterThan(300);
    const oursIncl = inclusionChecks.map((c) => verifyInclusion(c.leaf, c.index, c.size, c.proof, c.root));
    expect(inclusionChecks.filter((_, k) => oursIncl[k] !== expected.check_inclusion[k])).toEqual([]);
  });

  test("a consistency proof from a frontier restored after pruning is the same proof", () => {
    const all = hashes(300);
    for (const [cut, m, n] of [[0, 100, 300], [64, 100, 300], [100, 100, 257], [37, 200, 201]]) {
      const restored = MerkleFrontier.parse(frontierOf(all.slice(0, cut)).serialize());
      for (const h of all.slice(cut, m)) restored.append(h);
      expect(consistencyProof(restored, all.slice(m, n))).toEqual(consistencyProof(frontierOf(all.slice(0, m)), all.slice(m, n)));
    }
    expect(verifyConsistency(3, 2, [], "00", "00")).toBe(false);
    expect(verifyConsistency(0, 5, ["0".repeat(64)], "", "")).toBe(false);
  });
});

describe("Merkle inclusion proofs", () => {
  test("a proof fails for another record, another index, another size, or a changed path", () => {
    const d = hashes(37);
    const tree = MerkleTree.of(d);
    const root = tree.root();
    const proof = tree.proof(12);
    expect(verifyInclusion(d[12], 12, 37, proof, root)).toBe(true);
    expect(verifyInclusion(d[13], 12, 37, proof, root)).toBe(false);
    expect(verifyInclusion(d[12], 13, 37, proof, root)).toBe(false);
    expect(verifyInclusion(d[12], 12, 20, proof, root)).toBe(false);
    expect(verifyInclusion(d[12], 12, 37, [...proof.slice(0, -1), "0".repeat(64)], root)).toBe(false);
    expect(verifyInclusion(d[12], 12, 37, proof.slice(1), root)).toBe(false);
    expect(verifyInclusion(d[12], 40, 37, proof, root)).toBe(false);
  });
});

describe("Merkle trees after pruning", () => {
  test("a tree rebuilt from a stored frontier and the remaining leaves has the same root and proofs", () => {
    const all = hashes(70);
    for (let cut = 0; cut <= 70; cut += 7) {
      const prefix = new MerkleFrontier();
      for (const h of all.slice(0, cut)) prefix.append(h);
      const restored = MerkleFrontier.parse(prefix.serialize());
      const full = MerkleTree.of(all);
      const pruned = MerkleTree.of(all.slice(cut), restored);
      expect(pruned.size).toBe(70);
      expect(pruned.root()).toBe(full.root());
      for (let m = cut; m < 70; m++) expect(pruned.proof(m)).toEqual(full.proof(m));
      // A pruned leaf has no proof, unless its siblings all survive in the frontier; never a wrong one.
      for (let m = 0; m < cut; m++) {
        let proof: string[] | null = null;
        try {
          proof = pruned.proof(m);
        } catch (err) {
          expect((err as Error).message).toMatch(/pruned/);
        }
        if (proof) expect(proof).toEqual(full.proof(m));
      }
    }
  });

  test("a stored frontier that does not fit its size is refused", () => {
    expect(() => MerkleFrontier.parse(JSON.stringify({ size: 3, nodes: [null, "00".repeat(32)] }))).toThrow(/does not fit/);
  });
});

describe("Merkle trees built in steps", () => {
  test("the stepped build gives the same tree as the one-go build, giving way every few thousand hashes", async () => {
    const all = hashes(20000);
    const prefix = new MerkleFrontier();
    for (const h of all.slice(0, 3000)) prefix.append(h);
    let givenWay = 0;
    const stepped = await MerkleTree.build(all.slice(3000), prefix, async () => {
      givenWay += 1;
    });
    const whole = MerkleTree.of(all);
    expect(stepped.root()).toBe(whole.root());
    expect(stepped.proof(12345)).toEqual(whole.proof(12345));
    // 17,000 leaf hashes and about as many node hashes, in steps of 4,096.
    expect(givenWay).toBeGreaterThanOrEqual(8);
  });
});
