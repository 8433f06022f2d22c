import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import jwt from "jsonwebtoken";
import { Checkpointer } from "../../src/chron/checkpoints";
import { ChronHaltedError, ChronWriter } from "../../src/chron/chron-writer";
import { FakeChronStore } from "../support/fakes/chron-store";
import { verifyConsistency } from "../../src/chron/merkle";
import { seal, type ChronRow, type DecisionContent } from "../../src/chron/record";
import { chronKeysOf, LocalKeySigner, lookupIn, openKeyFile, publishChronKey, tagVerdict } from "../../src/chron/signer";
import { readWitnessLog, WitnessLog, type WitnessLine } from "../../src/chron/witness";
import { createLogger } from "../../src/lib/logger";
import { verifyCheckpoint } from "../../src/chron/checkpoint-jws";
import { decisionContent } from "../support/decision-content";

const logger = createLogger("silent");
const pem = () => generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "pkcs8" }) as string;
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "claiim-trust-"));

function content(n: number): DecisionContent {
  return decisionContent(n, { decision_id: `t-${n}`, accountable_human: null, purpose: "p", reasons: ["ok"], policy: { version: 1, revision: "r", digest: "d" }, bundles: { claiim: { revision: "r" } } });
}

async function lines(file: string, signer: LocalKeySigner): Promise<WitnessLine[]> {
  const out: WitnessLine[] = [];
  for await (const l of readWitnessLog(file, lookupIn(signer.publicKeys()))) out.push(l);
  return out;
}

describe("the Chron key file", () => {
  test("is created beside the database when CLAIIM chose the path: mode 0600, made once, then read", () => {
    const dir = tmp();
    const files = { keyFile: path.join(dir, "data", "chron-signing-key.pem"), keyFileGiven: false, trustedKeysFile: path.join(dir, "trusted.json") };
    const made = openKeyFile(files);
    expect(made.created).toBe(true);
    expect(fs.statSync(files.keyFile).mode & 0o777).toBe(0o600);
    expect(openKeyFile(files)).toEqual({ pem: made.pem, created: false });
    expect(() => openKeyFile({ ...files, keyFile: path.join(dir, "typo.pem"), keyFileGiven: true })).toThrow(/does not exist/);
  });

  test("signs ES256 JWS that verify with its public key, and tags records with a MAC that names its key", async () => {
    const key = pem();
    const signer = new LocalKeySigner(key);
    const other = new LocalKeySigner(pem());
    // The same key written as SEC1 instead of PKCS#8: the same kid and the same tags.
    const sec1 = createPrivateKey(key).export({ format: "pem", type: "sec1" }) as string;
    const again = new LocalKeySigner(sec1);
    const hash = "ab".repeat(32);
    expect(again.kid).toBe(signer.kid);
    expect(again.tag(hash)).toBe(signer.tag(hash));
    expect(signer.tag(hash)).toMatch(new RegExp(`^${signer.kid.slice(0, 8)}:[0-9a-f]{32}$`));
    expect(tagVerdict(signer.tag(hash), hash, signer)).toBe("valid");
    expect(tagVerdict(signer.tag(hash), "cd".repeat(32), signer)).toBe("invalid");
    expect(tagVerdict(other.tag(hash), hash, signer)).toBe("other_key");
    expect(tagVerdict(`${signer.kid.slice(0, 8)}:${"0".repeat(32)}`, hash, signer)).toBe("invalid");
    expect(tagVerdict("garbage", hash, signer)).toBe("invalid");
    expect(tagVerdict(null, hash, signer)).toBe("none");
    expect(() => new LocalKeySigner(generateKeyPairSync("ec", { namedCurve: "secp384r1" }).privateKey.export({ format: "pem", type: "pkcs8" }) as string)).toThrow(/P-256/);

    const checkpointer = new Checkpointer(new FakeChronStore(), signer, { everyRecords: 1, everySeconds: 3600 }, logger);
    const jws = await checkpointer.signDigest("x");
    expect(jwt.verify(jws, signer.publicKeys()[0].publicKey, { algorithms: ["ES256"] })).toEqual({ header_sha256: "x" });
    expect(jwt.decode(jws, { complete: true })!.header).toMatchObject({ alg: "ES256", kid: signer.kid });
  });

  test("a key once kept in the database vouches only up to its limit; a JWKS with Chron's marks trusts only those keys", () => {
    const legacy = new LocalKeySigner(pem());
    const [own] = legacy.publicKeys();
    const capped = { ...own, maxSeq: 20 };
    const sign = (sequence: number) => jwt.sign({ sequence, hash: "h", count: sequence, timestamp: "t" }, legacy["privateKey"], { algorithm: "ES256", keyid: legacy.kid, noTimestamp: true });
    expect(verifyCheckpoint(sign(20), lookupIn([capped]))).toMatchObject({ sequence: 20 });
    expect(() => verifyCheckpoint(sign(21), lookupIn([capped]))).toThrow(/trusts only up to record 20/);

    const token = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" }) as Record<string, string>;
    const marked = { keys: [{ ...token, kid: "token", use: "sig" }, publishChronKey(capped)] };
    expect(chronKeysOf(marked).map((k) => [k.kid, k.maxSeq])).toEqual([[legacy.kid, 20]]);
    // Saved before the marks existed: every key of the file is taken, by its thumbprint.
    expect(chronKeysOf({ keys: [{ ...token, kid: "whatever" }] })).toHaveLength(1);
    expect(() => chronKeysOf({ keys: [{ ...token, d: "secret", claiim_use: "chron" }] })).toThrow(/private/);
    expect(() => chronKeysOf({ keys: [{ ...publishChronKey(own), claiim_max_seq: "20" }] })).toThrow(/record number/);
    expect(() => chronKeysOf({ nope: 1 } as never)).toThrow(/JWKS/);
  });
});

describe("the witness log", () => {
  test("holds one line per head that grows the tree, each proven to extend the one before; a stop signs the last head", async () => {
    const dir = tmp();
    const store = new FakeChronStore();
    const signer = new LocalKeySigner(pem());
    const log = new WitnessLog(dir);
    const writer = new ChronWriter(store, 100, logger, signer);
    const checkpointer = new Checkpointer(store, signer, { everyRecords: 7, everySeconds: 3600 }, logger, { log, remote: null });
    await checkpointer.start();
    writer.onCommit((rows) => checkpointer.committed(rows));
    for (let i = 1; i <= 30; i++) await writer.append(content(i));
    await checkpointer.idle();
    // A checkpoint below the last witnessed head (an export's) is not witnessed again.
    await checkpointer.at({ seq: 10, hash: store.rows[9].hash });
    await writer.close();
    await checkpointer.stop();
    const read = await lines(log.file, signer);
    expect(read.map((l) => [l.problem, l.head?.tree_size])).toEqual([[null, 7], [null, 14], [null, 21], [null, 28], [null, 30]]);
    for (const [i, { head }] of read.entries()) {
      if (i === 0) expect(head!.consistency).toBeNull();
      else expect(verifyConsistency(head!.consistency!.from_size, head!.tree_size, head!.consistency!.proof, head!.consistency!.from_root, head!.root)).toBe(true);
    }
    expect(store.checkpointRows.map((c) => c.seq)).toEqual([7, 10, 14, 21, 28, 30]);
  });

  test("a line a crash left half-written is cut when the log opens; forged, reordered or unproven lines are named", async () => {
    const dir = tmp();
    const store = new FakeChronStore();
    const signer = new LocalKeySigner(pem());
    const log = new WitnessLog(dir);
    const writer = new ChronWriter(store, 100, logger, signer);
    const checkpointer = new Checkpointer(store, signer, { everyRecords: 5, everySeconds: 3600 }, logger, { log, remote: null });
    await checkpointer.start();
    writer.onCommit((rows) => checkpointer.committed(rows));
    for (let i = 1; i <= 15; i++) await writer.append(content(i));
    await checkpointer.stop();
    const text = fs.readFileSync(log.file, "utf8");
    fs.appendFileSync(log.file, '{"chron_witness":1,"tree_si');
    const reopened = new WitnessLog(dir);
    expect((await reopened.open(logger))?.tree_size).toBe(15);
    await reopened.close();
    expect(fs.readFileSync(log.file, "utf8")).toBe(text);

    const [a, b, c] = text.trim().split("\n").map((l) => JSON.parse(l));
    const variants: [string, string, RegExp][] = [
      ["not JSON", [JSON.stringify(a), "{oops", JSON.stringify(b)].join("\n"), /^not JSON$/],
      ["reordered", [JSON.stringify(b), JSON.stringify(a)].join("\n"), /is not larger than the one before/],
      ["a root changed", [JSON.stringify(a), JSON.stringify({ ...b, root: "00".repeat(32) })].join("\n"), /disagree with what its signature signs/],
      ["a head skipped, its proof now from the wrong head", [JSON.stringify(a), JSON.stringify(c)].join("\n"), /no consistency proof from the head before it/],
      ["a proof changed", [JSON.stringify(a), JSON.stringify({ ...b, consistency: { ...b.consistency, proof: ["00".repeat(32)] } })].join("\n"), /does not show that it extends/],
      ["signed by a stranger", [JSON.stringify({ ...a, jws: jwt.sign({ sequence: a.tree_size }, pem(), { algorithm: "ES256", keyid: "stranger", noTimestamp: true }) })].join("\n"), /unknown key/],
    ];
    for (const [what, body, problem] of variants) {
      const file = path.join(dir, `${what.replace(/\W+/g, "-")}.log`);
      fs.writeFileSync(file, `${body}\n`);
      const found = (await lines(file, signer)).filter((l) => l.problem);
      expect([what, found.map((l) => l.problem)]).toEqual([what, [expect.stringMatching(problem)]]);
    }
  });
});

describe("the Chron writer with its key", () => {
  /** Two writers on one store with the same key, as two CLAIIM processes with the same key file. */
  async function twoWriters() {
    const store = new FakeChronStore();
    const signer = new LocalKeySigner(pem());
    const a = new ChronWriter(store, 100, logger, signer);
    const b = new ChronWriter(store, 100, logger, signer);
    a.startAt(null);
    b.startAt(null);
    return { store, signer, a, b };
  }

  test("tags every record it writes, and chains on records another CLAIIM with the same key appended, handing on only its own", async () => {
    const { store, signer, a, b } = await twoWriters();
    const seen: number[] = [];
    a.onCommit((rows) => seen.push(...rows.map((r) => r.seq)));
    await a.append(content(1));
    await b.append(content(2));
    await b.append(content(3));
    const row = await a.append(content(4));
    expect(row).toMatchObject({ seq: 4, prevHash: store.rows[2].hash });
    expect(seen).toEqual([1, 4]);
    expect(store.rows.every((r) => tagVerdict(r.tag, r.hash, signer) === "valid")).toBe(true);
  });

  test("halts on a record appended by someone without the key: nothing more is written after it, and it is named", async () => {
    const { store, a } = await twoWriters();
    await a.append(content(1));
    const [forged] = seal([content(2)], { seq: 1, hash: store.rows[0].hash });
    await store.append(() => [forged as ChronRow]);
    const err = await a.append(content(3)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChronHaltedError);
    expect(err).toMatchObject({ seq: 2, message: expect.stringMatching(/record 2 was not written by CLAIIM/) });
    await expect(a.append(content(4))).rejects.toBeInstanceOf(ChronHaltedError);
    expect(a.haltedBy()?.seq).toBe(2);
    expect(store.rows.map((r) => r.seq)).toEqual([1, 2]);
  });

  test("halts on a tagged record that does not chain from its head, or whose hash does not cover its content", async () => {
    for (const spoil of [(r: ChronRow) => ({ ...r, prevHash: "0".repeat(64) }), (r: ChronRow) => ({ ...r, content: r.content.replace('"p"', '"q"') })]) {
      const { store, signer, a } = await twoWriters();
      await a.append(content(1));
      const [next] = seal([content(2)], { seq: 1, hash: store.rows[0].hash }, (h) => signer.tag(h));
      await store.append(() => [spoil(next)]);
      await expect(a.append(content(3))).rejects.toMatchObject({ seq: 2 });
    }
  });
});
