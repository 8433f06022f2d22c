import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import jwt from "jsonwebtoken";
import { openDatabase } from "../../src/db/database";
import { createLogger } from "../../src/lib/logger";
import { canonicalize } from "../../src/lib/canonical";
import { Checkpointer } from "../../src/chron/checkpoints";
import { ChronWriter } from "../../src/chron/chron-writer";
import { MerkleFrontier } from "../../src/chron/merkle";
import { recordHash, type ChronContent, type DecisionContent } from "../../src/chron/record";
import { LocalKeySigner } from "../../src/chron/signer";
import { WITNESS_FILE } from "../../src/chron/witness";
import { generate } from "../../src/keys/signing-keys";
import { PrismaIdentityStore } from "../../src/identity/prisma-identity-store";
import { createChronStore } from "../../src/server";
import { startTestServer, type TestServer } from "../support/claiim";
import { databaseKinds, freshDatabase } from "../support/databases";
import { downloadExport, saveJwks } from "../support/export";
import { startLossyProxy } from "../support/lossy-proxy";
import { buildReference, reference } from "../support/merkle-reference";
import { asDatabaseOwner, sql } from "../support/sql";
import { claiimVerify } from "../support/verify-cli";
import { decisionContent } from "../support/decision-content";
import { MadeUpLog } from "../support/witnessed-heads";
import { ReceivedHeads } from "../../src/chron/witness-receiver";
import { sqlReceivedHeadStore } from "../../src/chron/received-store";
import { Writable } from "node:stream";

const staging = { action: "deploy", resource: "staging", purpose: "release", skill: { name: "deploy", version: "1.2.0" } };
const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An organisation, an owner, an agent with the deploy skill, and its token. */
async function deployBot(s: TestServer): Promise<string> {
  await s.http.post("/v1/organizations").set(bearer(s.admin)).send({ slug: "acme", name: "Acme" }).expect(201);
  await s.http.post("/v1/humans").set(bearer(s.admin)).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
  const agent = (await s.http.post("/v1/agents").set(bearer(s.admin)).send({ organization: "acme", name: "deploy-bot", owner: "alice@acme.example", skills: [staging.skill] }).expect(201)).body;
  return (await s.http.post(`/v1/agents/${agent.id}/credentials`).set(bearer(s.admin)).send({}).expect(201)).body.token;
}

describe.each(databaseKinds())("witnesses and consistency proofs, on %s", (kind) => {
  test("another CLAIIM witnesses every signed head, refusing any that does not extend the last; decisions never wait for it; its log verifies an export", async () => {
    const witness = await startTestServer(kind);
    const key = (await witness.http.post("/v1/api-keys").set(bearer(witness.admin)).send({ name: "origin", role: "witness" }).expect(201)).body;
    const gate = await startLossyProxy(witness.claiim.url);
    const origin = await startTestServer(kind, {
      env: { CLAIIM_WITNESS_URL: `${gate.url}/v1/witness/heads`, CLAIIM_WITNESS_TOKEN: key.secret, CLAIIM_WITNESS_RETRY_SECONDS: "0.2,0.5", CLAIIM_CHECKPOINT_EVERY_SECONDS: "1" },
    });
    try {
      const token = await deployBot(origin);
      const decide = () => origin.http.post("/v1/decisions").set(bearer(token)).send(staging).expect(200);
      const verify = async () => (await origin.http.get("/v1/chron/verify").set(bearer(origin.admin)).expect(200)).body;
      for (let i = 0; i < 10; i++) await decide();
      const acknowledged = async () => {
        const v = await verify();
        return v.witness.remote.acknowledged_size !== null && v.witness.remote.acknowledged_size === v.witness.last?.tree_size && v.witness.last.tree_size === v.head.seq && v;
      };
      await until("the witness to hold the origin's head", acknowledged);

      // The witness is down: decisions go on at once, every one recorded; delivery is retried.
      gate.down = true;
      const started = Date.now();
      for (let i = 0; i < 10; i++) await decide();
      expect(Date.now() - started).toBeLessThan(10_000);
      const waiting = await until("a failed delivery", async () => {
        const v = await verify();
        return gate.refused > 0 && v.witness.remote.last_error && v;
      });
      expect(waiting).toMatchObject({ valid: true, witness: { remote: { last_error: expect.stringMatching(/503/) } } });
      expect(waiting.witness.remote.pending_size).toBeGreaterThan(waiting.witness.remote.acknowledged_size);

      // Back: the newest head is delivered with the proof from the last one the witness holds.
      gate.down = false;
      const caughtUp = await until("the witness to catch up", acknowledged);
      expect(caughtUp.witness.remote).toMatchObject({ last_error: null, pending_size: null });

      // The witness refuses a head that does not extend what it holds, naming what it holds.
      const file = path.join(process.env.CLAIIM_TEST_TMP!, `received-${kind}-${process.pid}.log`);
      const held = (await witness.http.get(`/v1/witness/heads?log=${key.id}`).set(bearer(witness.admin)).expect(200)).text;
      fs.writeFileSync(file, held);
      const heads = held.trim().split("\n").map((l) => JSON.parse(l));
      const last = heads[heads.length - 1];
      expect(heads.length).toBeGreaterThanOrEqual(2);
      const fork = { ...last, tree_size: last.tree_size + 1, root: "ab".repeat(32), consistency: { from_size: last.tree_size, from_root: last.root, proof: [] } };
      const refused = await witness.http.post("/v1/witness/heads").set(bearer(key.secret)).send(fork).expect(409);
      expect(refused.body).toMatchObject({ code: "witness_head_inconsistent", tree_size: last.tree_size, root: last.root });
      const older = await witness.http.post("/v1/witness/heads").set(bearer(key.secret)).send({ ...heads[0], consistency: null }).expect(409);
      expect(older.body).toMatchObject({ code: "witness_head_not_extending", tree_size: last.tree_size });
      await witness.http.post("/v1/witness/heads").set(bearer(witness.admin)).send({ ...last, chron_witness: 2 }).expect(400);
      expect((await witness.http.get("/v1/witness/heads").set(bearer(key.secret)).expect(200)).text).toBe(held);

      // What the witness holds checks an export of the origin's Chron offline, head by head.
      const dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "witnessed-"));
      const jwks = await saveJwks(origin, dir);
      const exported = await downloadExport(origin, origin.admin, "format=ndjson", dir, "all.ndjson");
      const ok = await claiimVerify(exported, jwks, file);
      expect(ok).toMatchObject({ code: 0, out: expect.stringMatching(/witness: \d+ signed tree heads, each extending the one before/) });
      // An export cut short (as a truncated chain would make it) fails against the witness.
      const lines = fs.readFileSync(exported, "utf8").trim().split("\n");
      const header = JSON.parse(lines[0]);
      const short = await downloadExport(origin, origin.admin, `format=ndjson&to_seq=${header.last_seq - 5}`, dir, "short.ndjson");
      expect(await claiimVerify(short, jwks, file)).toMatchObject({ code: 0 });
      const tampered = path.join(dir, "tampered.log");
      fs.writeFileSync(tampered, held.replace(last.root, "cd".repeat(32)));
      expect(await claiimVerify(exported, jwks, tampered)).toMatchObject({ code: 1, out: expect.stringMatching(/witness log line \d+/) });
    } finally {
      await origin.stop();
      await gate.close();
      await witness.stop();
    }
  });

  test("GET /v1/chron/consistency gives the reference implementation's RFC 9162 proofs, between the roots CLAIIM signed", async () => {
    buildReference();
    const s = await startTestServer(kind, { env: { CLAIIM_CHECKPOINT_EVERY_RECORDS: "7", CLAIIM_CHECKPOINT_EVERY_SECONDS: "3600" } });
    try {
      const token = await deployBot(s);
      for (let i = 0; i < 40; i++) await s.http.post("/v1/decisions").set(bearer(token)).send(staging).expect(200);
      await s.claiim.checkpointer.idle();
      const hashes = ((await sql(s.claiim.db, "SELECT hash FROM chron_records ORDER BY seq")) as { hash: string }[]).map((r) => r.hash);
      const cps = ((await sql(s.claiim.db, "SELECT seq, jws FROM chron_checkpoints ORDER BY seq")) as { seq: number; jws: string }[]).map((c) => ({ seq: Number(c.seq), root: (jwt.decode(c.jws) as { root: string }).root }));
      const n = hashes.length;
      const pairs: [number, number][] = [[1, n], [n, n], [cps[0].seq, cps[1].seq], [cps[1].seq, n], [3, 5], [cps[0].seq - 1, cps[2].seq + 1], [n - 1, n]];
      const expected = reference({ leaves: hashes, consistency: pairs, roots: pairs.flat() });
      for (const [k, [first, second]] of pairs.entries()) {
        const res = (await s.http.get(`/v1/chron/consistency?first=${first}&second=${second}`).set(bearer(s.admin)).expect(200)).body;
        expect([first, second, res.proof]).toEqual([first, second, expected.consistency[k]]);
        expect([res.first_root, res.second_root]).toEqual([expected.roots[2 * k], expected.roots[2 * k + 1]]);
        // Where CLAIIM signed a head of that size, the proof joins the roots it signed.
        for (const [size, root, signed] of [[first, res.first_root, res.checkpoints.first], [second, res.second_root, res.checkpoints.second]] as const) {
          const cp = cps.find((c) => c.seq === size);
          expect(signed?.seq ?? null).toBe(cp?.seq ?? null);
          if (cp) expect(root).toBe(cp.root);
        }
      }
      expect((await s.http.get("/v1/chron/consistency?first=9&second=3").set(bearer(s.admin)).expect(400)).body.code).toBe("range_inverted");
      expect((await s.http.get(`/v1/chron/consistency?first=1&second=${n + 10}`).set(bearer(s.admin)).expect(404)).body.code).toBe("tree_size_unknown");
      expect((await s.http.get("/v1/chron/consistency?first=0&second=3").set(bearer(s.admin)).expect(400)).body.errors[0].path).toBe("first");
    } finally {
      await s.stop();
    }
  });

  test("the Chron key moves out of a database that held it, once: old checkpoints stay verifiable, and the old key vouches for nothing after them", async () => {
    // A database as the CLAIIM before this one left it: its Chron key in signing_keys, checkpoints
    // at 10 and 20 signed by it, and records 21..25 that no checkpoint covers (and no tag: it did not tag).
    const { prepared, dir, legacyKey } = await legacyDatabase(kind, 20, 25);
    const s = await startTestServer(kind, { database: { db: prepared, dir }, env: { CLAIIM_CHECKPOINT_EVERY_SECONDS: "3600" } });
    const admin = bearer(s.admin);
    const verify = async () => (await s.http.get("/v1/chron/verify").set(admin).expect(200)).body;
    try {
      const keys = s.config.chronTrust.keys;
      expect(fs.statSync(keys.keyFile).mode & 0o777).toBe(0o600);
      expect(fs.existsSync(`${keys.keyFile}.moving`)).toBe(false);
      const trusted = JSON.parse(fs.readFileSync(keys.trustedKeysFile, "utf8")).keys;
      expect(trusted).toEqual([expect.objectContaining({ kid: legacyKey.kid, claiim_use: "chron", claiim_max_seq: 20 })]);
      const [moved] = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin)).body.records.filter((r: { type: string }) => r.type === "chron.signing_key_moved");
      expect(moved).toMatchObject({ seq: 26, before: { location: "database", kids: [legacyKey.kid] }, after: { location: "file", kid: s.claiim.chronSigner.kid, retired_keys_verify_up_to: 20, untagged_records: { from_seq: 21, to_seq: 25 } } });
      expect((await sql(s.claiim.db, "SELECT retired_at FROM signing_keys WHERE kid = $1", [legacyKey.kid]))[0].retired_at).not.toBeNull();
      const jwks = (await s.http.get("/.well-known/jwks.json").expect(200)).body.keys;
      expect(jwks).toEqual(expect.arrayContaining([expect.objectContaining({ kid: legacyKey.kid, claiim_use: "chron", claiim_max_seq: 20 }), expect.objectContaining({ kid: s.claiim.chronSigner.kid, claiim_use: "chron" })]));
      expect(await verify()).toMatchObject({ valid: true, checkpoints: { checked: 3, last: { seq: 26 } } });
      const files = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "legacy-export-"));
      const jwksFile = await saveJwks(s, files);
      const witness = path.join(s.config.chronTrust.witnessDir, WITNESS_FILE);
      expect(await claiimVerify(await downloadExport(s, s.admin, "format=ndjson", files, "all.ndjson"), jwksFile, witness)).toMatchObject({ code: 0 });

      // The old key, which the database held, signs a checkpoint after its limit: not believed.
      const [cp26] = (await sql(s.claiim.db, "SELECT jws FROM chron_checkpoints WHERE seq = 26")) as { jws: string }[];
      const resigned = jwt.sign(jwt.decode(cp26.jws) as object, legacyKey.privateKeyPem, { algorithm: "ES256", keyid: legacyKey.kid, noTimestamp: true });
      await asDatabaseOwner(s.claiim.db, () => sql(s.claiim.db, "UPDATE chron_checkpoints SET jws = $1 WHERE seq = 26", [resigned]));
      expect((await verify()).first_bad).toMatchObject({ seq: 26, problem: expect.stringMatching(/kept in its database and trusts only up to record 20/) });
      await asDatabaseOwner(s.claiim.db, () => sql(s.claiim.db, "UPDATE chron_checkpoints SET jws = $1 WHERE seq = 26", [cp26.jws]));

      // Within its limit, the old key can be made to sign a rewritten past, Merkle root and all. The
      // first head the file key signed no longer matches: from the last head that still verifies,
      // nothing vouches for the untagged records an earlier CLAIIM wrote, and the first is named.
      const original = (await sql(s.claiim.db, "SELECT seq, content, prev_hash, hash FROM chron_records WHERE seq >= 15 ORDER BY seq")) as { seq: number; content: string; prev_hash: string; hash: string }[];
      const [cp20] = (await sql(s.claiim.db, "SELECT jws, hash, frontier FROM chron_checkpoints WHERE seq = 20")) as { jws: string; hash: string; frontier: string }[];
      await asDatabaseOwner(s.claiim.db, async () => {
        let prev = original[0].prev_hash;
        const frontier = MerkleFrontier.parse(((await sql(s.claiim.db, "SELECT frontier FROM chron_checkpoints WHERE seq = 10")) as { frontier: string }[])[0].frontier);
        for (const h of ((await sql(s.claiim.db, "SELECT hash FROM chron_records WHERE seq > 10 AND seq < 15 ORDER BY seq")) as { hash: string }[])) frontier.append(h.hash);
        for (const row of original) {
          const content = JSON.parse(row.content) as ChronContent;
          if (Number(row.seq) === 15) (content as DecisionContent).purpose = "rewritten";
          const hash = recordHash(content, Number(row.seq), prev);
          await sql(s.claiim.db, "UPDATE chron_records SET content = $1, prev_hash = $2, hash = $3 WHERE seq = $4", [canonicalize(content), prev, hash, row.seq]);
          prev = hash;
          if (Number(row.seq) <= 20) frontier.append(hash);
          if (Number(row.seq) === 20) {
            const claims = { ...(jwt.decode(cp20.jws) as object), hash, root: frontier.root() };
            const jws = jwt.sign(claims, legacyKey.privateKeyPem, { algorithm: "ES256", keyid: legacyKey.kid, noTimestamp: true });
            await sql(s.claiim.db, "UPDATE chron_checkpoints SET hash = $1, jws = $2, frontier = $3 WHERE seq = 20", [hash, jws, frontier.serialize()]);
          }
        }
      });
      const broken = await verify();
      expect(broken).toMatchObject({ valid: false, first_bad: { seq: 21, problem: expect.stringMatching(/^nothing vouches for this record/) } });
      expect(broken.problems).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ seq: 26, problem: expect.stringMatching(/^writer's tag does not match/) }),
          expect.objectContaining({ seq: 26, problem: "record disagrees with its signed checkpoint" }),
        ]),
      );
      await asDatabaseOwner(s.claiim.db, async () => {
        for (const row of original) await sql(s.claiim.db, "UPDATE chron_records SET content = $1, prev_hash = $2, hash = $3 WHERE seq = $4", [row.content, row.prev_hash, row.hash, row.seq]);
        await sql(s.claiim.db, "UPDATE chron_checkpoints SET hash = $1, jws = $2, frontier = $3 WHERE seq = 20", [cp20.hash, cp20.jws, cp20.frontier]);
      });
      expect((await verify()).valid).toBe(true);

      // Once moved, never again: a restart records nothing and trusts the old key no further.
      await s.restart();
      const events = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin)).body.records.map((r: { type: string }) => r.type);
      expect(events.filter((t: string) => t === "chron.signing_key_moved")).toHaveLength(1);
      expect(JSON.parse(fs.readFileSync(keys.trustedKeysFile, "utf8")).keys).toEqual(trusted);

      // A new key file: refused until the key before it is trusted; then the change is recorded.
      const before = s.claiim.chronSigner;
      const oldJwk = jwks.find((k: { kid: string }) => k.kid === before.kid);
      fs.writeFileSync(keys.keyFile, generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
      await expect(s.restart()).rejects.toThrow(/^Chron does not verify, so CLAIIM will not start: record \d+: .*put the previous public key in the trusted keys file/);
      fs.writeFileSync(keys.trustedKeysFile, JSON.stringify({ keys: [...trusted, oldJwk] }));
      await s.restart();
      const [changed] = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin)).body.records.filter((r: { type: string }) => r.type === "chron.signing_key_changed");
      expect(changed).toMatchObject({ before: { kid: before.kid }, after: { kid: s.claiim.chronSigner.kid } });
      expect(s.claiim.chronSigner.kid).not.toBe(before.kid);
      expect(await verify()).toMatchObject({ valid: true });
    } finally {
      await s.stop();
    }
  });

  test("a database an earlier CLAIIM left without any checkpoint moves too: its untagged records are signed at once", async () => {
    const { prepared, dir, legacyKey } = await legacyDatabase(kind, 0, 6);
    const s = await startTestServer(kind, { database: { db: prepared, dir } });
    try {
      const [moved] = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(bearer(s.admin))).body.records.filter((r: { type: string }) => r.type === "chron.signing_key_moved");
      expect(moved).toMatchObject({ seq: 7, before: { kids: [legacyKey.kid] }, after: { retired_keys_verify_up_to: 0, untagged_records: { from_seq: 1, to_seq: 6 } } });
      // The old key signed nothing: it is trusted for nothing.
      expect(fs.existsSync(s.config.chronTrust.keys.trustedKeysFile)).toBe(false);
      expect((await s.http.get("/v1/chron/verify").set(bearer(s.admin)).expect(200)).body).toMatchObject({ valid: true });
      await s.restart();
      expect((await s.http.get("/v1/chron/verify").set(bearer(s.admin)).expect(200)).body).toMatchObject({ valid: true });
    } finally {
      await s.stop();
    }
  });

  test("two processes on one database hold one chain of received heads: of two branches of a fork posted to each at once, one is held and the other refused", async () => {
    const dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "received-"));
    const db = await freshDatabase(kind, dir);
    const [one, two] = [await openDatabase(kind, db.url), await openDatabase(kind, db.url)];
    try {
      const a = new ReceivedHeads(sqlReceivedHeadStore(one), createLogger("silent"));
      const b = new ReceivedHeads(sqlReceivedHeadStore(two), createLogger("silent"));
      const LOG = "5f1e0c7a-2b3d-4e5f-8a9b-0c1d2e3f4a5b";
      let log = new MadeUpLog();
      await a.add(LOG, log.head(10, null));
      for (let round = 0; round < 25; round++) {
        const last = (await sqlReceivedHeadStore(one).last(LOG))!.tree_size;
        const other = log.fork(last);
        const branches = [log.head(last + 3 + (round % 3), last), other.head(last + 4, last)];
        // Each process asked for one branch, the two at once (in turn the first to ask).
        const asked = round % 2 ? [a.add(LOG, branches[0]), b.add(LOG, branches[1])] : [b.add(LOG, branches[1]), a.add(LOG, branches[0])];
        const answers = await Promise.allSettled(asked);
        expect(answers.map((x) => x.status).sort()).toEqual(["fulfilled", "rejected"]);
        const refused = answers.find((x) => x.status === "rejected") as PromiseRejectedResult;
        expect(refused.reason).toMatchObject({ code: "witness_head_not_extending" });
        // The made-up log goes on from the branch held.
        if ((await sqlReceivedHeadStore(two).last(LOG))!.root === branches[1].root) log = other;
      }
      // The rows are one chain: each head proven from the one before, whichever process stored it.
      const rows = await sql(one, "SELECT tree_size, from_size, line FROM witness_heads WHERE log = $1 ORDER BY tree_size", [LOG]);
      for (let i = 1; i < rows.length; i++) {
        expect(Number(rows[i].from_size)).toBe(Number(rows[i - 1].tree_size));
        expect(JSON.parse(rows[i].line as string).consistency).toMatchObject({ from_size: Number(rows[i - 1].tree_size) });
      }
    } finally {
      await one.close();
      await two.close();
      await db.drop();
    }
  }, 60_000);

  test("heads that earlier versions received into files (one per worker) come into the database at start: the longest chain is held, a fork between two workers' files is logged", async () => {
    const dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "received-files-"));
    const witnessDir = path.join(dir, "witness");
    const LOG = "6a2f1d8b-3c4e-4f60-9b0c-1d2e3f4a5b6c";
    const log = new MadeUpLog();
    // Worker 1 held 1,050 heads (more than one insert and one transaction of the import take); worker 2 a branch at 41.
    const heads = Array.from({ length: 1050 }, (_, i) => log.head(5 + i, i === 0 ? null : 4 + i));
    const fork = log.fork(20).head(41, 20);
    const worker = (n: number) => path.join(witnessDir, `worker-${n}`, "received", `${LOG}.log`);
    fs.mkdirSync(path.dirname(worker(1)), { recursive: true });
    fs.mkdirSync(path.dirname(worker(2)), { recursive: true });
    fs.writeFileSync(worker(1), heads.map((h) => JSON.stringify(h) + "\n").join(""));
    fs.writeFileSync(worker(2), [heads[0], log.head(20, 5), fork].map((h) => JSON.stringify(h) + "\n").join(""));
    const logs: Record<string, unknown>[] = [];
    const logStream = new Writable({ write: (chunk, _enc, done) => (logs.push(...String(chunk).trim().split("\n").map((l) => JSON.parse(l))), done()) });
    const s = await startTestServer(kind, { env: { CLAIIM_WITNESS_DIR: witnessDir, LOG_LEVEL: "info" }, logStream });
    try {
      const held = (await s.http.get(`/v1/witness/heads?log=${LOG}`).set(bearer(s.admin)).expect(200)).text.trim().split("\n");
      expect(held).toEqual(heads.map((h, i) => JSON.stringify(i === 0 ? { ...h, consistency: null } : h)));
      expect(logs.filter((l) => l.level === "error")).toEqual([
        expect.objectContaining({ log: LOG, file: `${worker(2)}.imported`, tree_size: 41, root: fork.root, held_root: heads[36].root }),
      ]);
      expect(fs.existsSync(worker(1))).toBe(false);
      expect(fs.existsSync(`${worker(1)}.imported`)).toBe(true);
    } finally {
      await s.stop();
    }
  }, 60_000);

});

/**
 * A database as the CLAIIM before this one left it: its Chron key in signing_keys, checkpoints
 * every 10 records up to `signed` signed by it, and records up to `written`, which it did not tag.
 */
async function legacyDatabase(kind: "sqlite" | "postgresql", signed: number, written: number) {
  const dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "legacy-"));
  const prepared = await freshDatabase(kind, dir);
  const legacyKey = generate("chron-checkpoint");
  const db = await openDatabase(kind, prepared.url);
  const logger = createLogger("silent");
  await db.prisma.$transaction((tx) => new PrismaIdentityStore(db.prisma).saveSigningKey(legacyKey, tx));
  const store = createChronStore(db);
  const writer = new ChronWriter(store, 100, logger);
  const checkpointer = new Checkpointer(store, new LocalKeySigner(legacyKey.privateKeyPem), { everyRecords: 10, everySeconds: 3600 }, logger);
  await checkpointer.start();
  writer.onCommit((rows) => checkpointer.committed(rows));
  for (let i = 1; i <= signed; i++) await writer.append(legacyDecision(i));
  await checkpointer.stop();
  for (let i = signed + 1; i <= written; i++) await writer.append(legacyDecision(i));
  await writer.close();
  await db.close();
  return { prepared, dir, legacyKey };
}

/** A decision record as any CLAIIM writes one. */
function legacyDecision(n: number): DecisionContent {
  return decisionContent(n, { decision_id: `legacy-${n}` });
}
