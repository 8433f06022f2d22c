import { createHash } from "node:crypto";
import { leafHash, MerkleFrontier, MerkleTree, nodeHash, verifyInclusion, EMPTY_ROOT } from "../../src/chron/merkle";

// The RFC 6962 definitions, written out recursively, as the reference.
function mth(d: string[]): Buffer {
  if (d.length === 0) return EMPTY_ROOT;
  if (d.length === 1) return leafHash(d[0]);
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return nodeHash(mth(d.slice(0, k)), mth(d.slice(k)));
}
function path(m: number, d: string[]): string[] {
  if (d.length <= 1) return [];
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return m < k ? [...path(m, d.slice(0, k)), mth(d.slice(k)).toString("hex")] : [...path(m - k, d.slice(k)), mth(d.slice(0, k)).toString("hex")];
}

const hashes = (n: number) => Array.from({ length: n }, (_, i) => createHash("sha256").update(`record ${i}`).digest("hex"));

describe("Merkle trees (RFC 6962)", () => {
  test("frontier and tree give RFC 6962's root for every size up to 70, and the RFC's audit paths", () => {
    const frontier = new MerkleFrontier();
    const all = hashes(70);
    expect(frontier.root()).toBe(EMPTY_ROOT.toString("hex"));
    for (let n = 1; n <= 70; n++) {
      frontier.append(all[n - 1]);
      const d = all.slice(0, n);
      const root = mth(d).toString("hex");
      expect(frontier.root()).toBe(root);
      const tree = MerkleTree.of(d);
      expect(tree.root()).toBe(root);
      for (let m = 0; m < n; m++) {
        const proof = tree.proof(m);
        expect(proof).toEqual(path(m, d));
        expect(verifyInclusion(d[m], m, n, proof, root)).toBe(true);
      }
    }
  });

  test("a proof fails for another record, another index, another size, or a changed path", () => {
    const d = hashes(37);
    const tree = MerkleTree.of(d);
    const root = tree.root();
    const proof = tree.proof(12);
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
