import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import jwt from "jsonwebtoken";
import { openDatabase, type Database } from "../../src/db/database";
import { canonicalize } from "../../src/lib/canonical";
import { MerkleFrontier } from "../../src/chron/merkle";
import { recordHash, type ChronContent } from "../../src/chron/record";
import { WITNESS_FILE } from "../../src/chron/witness";
import { startTestServer, type TestServer } from "../support/claiim";
import { databaseKinds } from "../support/databases";
import { downloadExport, saveJwks } from "../support/export";
import { asDatabaseOwner, sql } from "../support/sql";
import { claiimVerify } from "../support/verify-cli";

type Row = Record<string, unknown> & { seq: number; id: string; kind: string; content: string; prev_hash: string; hash: string; tag: string | null; decision: string | null };
type CheckpointRow = Record<string, unknown> & { seq: number; hash: string; kid: string; jws: string; frontier: string | null };

interface Snapshot {
  records: Row[];
  checkpoints: CheckpointRow[];
}

const staging = { action: "deploy", resource: "staging", purpose: "release", skill: { name: "deploy", version: "1.2.0" } };

/**
 * Each of the sixteen kinds of tampering issue 10 lists, done as a database administrator would
 * (write access to the database, nothing else: not the key file, not the witness log), on a CLAIIM
 * with its Chron key in a file and a witness log. Each must be found, naming its first bad record,
 * by the server's verification, by claiim-verify --witness on an export made then, and by the next
 * start, which refuses. Then the true chain is put back, and CLAIIM starts again.
 */
describe.each(databaseKinds())("Chron tampered with by a database administrator, on %s, with the key in a file and a witness", (kind) => {
  let s: TestServer;
  let attacker: Database;
  let dir: string;
  let jwks: string;
  let witness: string;
  let token: string;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  const verify = async () => (await s.http.get("/v1/chron/verify").set(admin()).expect(200)).body;
  const decide = () => s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(staging).expect(200);
  const records = async () => ((await sql(attacker, "SELECT * FROM chron_records ORDER BY seq")) as Row[]).map((r) => ({ ...r, seq: Number(r.seq) }));
  const checkpoints = async () => ((await sql(attacker, "SELECT * FROM chron_checkpoints ORDER BY seq")) as CheckpointRow[]).map((c) => ({ ...c, seq: Number(c.seq) }));
  const insert = (table: string, row: Record<string, unknown>) =>
    sql(attacker, `INSERT INTO ${table} (${Object.keys(row).join(", ")}) VALUES (${Object.keys(row).map((_, i) => `$${i + 1}`).join(", ")})`, Object.values(row));
  /** A record in the middle of the chain: after the second checkpoint, before the third. */
  const middle = async () => {
    const cps = (await checkpoints()).map((c) => c.seq);
    expect(cps[2] - cps[1]).toBeGreaterThan(3);
    return cps[1] + 2;
  };
  /** Recomputes every hash (and link) from record `from` on, as an attacker who wants a consistent chain would. */
  const rechain = async (from: number) => {
    const rows = await records();
    let prev = rows.find((r) => r.seq === from - 1)?.hash ?? "0".repeat(64);
    for (const row of rows.filter((r) => r.seq >= from)) {
      const hash = recordHash(JSON.parse(row.content) as ChronContent, row.seq, prev);
      await sql(attacker, "UPDATE chron_records SET prev_hash = $1, hash = $2 WHERE seq = $3", [prev, hash, row.seq]);
      prev = hash;
    }
  };
  /** Moves every record after `after` one place up, leaving `after + 1` free. */
  const makeRoom = async (after: number) => {
    await sql(attacker, "UPDATE chron_records SET seq = -seq - 1 WHERE seq > $1", [after]);
    await sql(attacker, "UPDATE chron_records SET seq = -seq WHERE seq < 0");
  };
  /** A well-formed record after `prev` (from a decision record), hashed as CLAIIM would, but not written by CLAIIM (no tag). */
  const forged = (template: Row, seq: number, prevHash: string) => {
    const content = { ...(JSON.parse(template.content) as ChronContent & { decision_id: string }), decision_id: `forged-${seq}-${kind}` };
    return { ...template, seq, id: content.decision_id, content: canonicalize(content), prev_hash: prevHash, hash: recordHash(content, seq, prevHash), tag: null };
  };

  /** A forged record slipped in after the middle one, everything after it moved up; with every later hash recomputed, or not. */
  const insertInTheMiddle = async (rehash: boolean) => {
    const m = await middle();
    const [row] = (await records()).filter((r) => r.seq === m);
    await makeRoom(m);
    await insert("chron_records", forged(row, m + 1, row.hash));
    if (rehash) await rechain(m + 2);
    return m + 1;
  };

  const snapshot = async (): Promise<Snapshot> => ({ records: await records(), checkpoints: await checkpoints() });

  /**
   * Puts the true chain back: the snapshot, and what CLAIIM itself wrote after it on the true chain
   * (records chained from its head and tagged with its key, and the tree heads it signed), so that
   * the witness log, which holds those heads, agrees.
   */
  const restore = async (before: Snapshot) => {
    const signer = s.claiim.chronSigner;
    await asDatabaseOwner(attacker, async () => {
      const head = before.records[before.records.length - 1];
      let prev = { seq: head.seq, hash: head.hash };
      const later: Row[] = [];
      for (const r of (await records()).filter((x) => x.seq > head.seq)) {
        if (r.seq !== prev.seq + 1 || r.prev_hash !== prev.hash || r.tag !== signer.tag(r.hash) || before.records.some((b) => b.id === r.id)) break;
        later.push(r);
        prev = { seq: r.seq, hash: r.hash };
      }
      const lastCp = before.checkpoints[before.checkpoints.length - 1].seq;
      const laterCps = (await checkpoints()).filter((c) => c.seq > lastCp && c.seq <= prev.seq && c.kid === signer.kid);
      await sql(attacker, "DELETE FROM chron_prune_window");
      await sql(attacker, "DELETE FROM chron_records");
      await sql(attacker, "DELETE FROM chron_checkpoints");
      for (const r of [...before.records, ...later]) await insert("chron_records", r);
      for (const c of [...before.checkpoints, ...laterCps]) await insert("chron_checkpoints", c);
    });
  };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "tamper-"));
    const keyFile = path.join(dir, "chron-key.pem");
    fs.writeFileSync(keyFile, generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
    s = await startTestServer(kind, {
      env: {
        CLAIIM_CHRON_SIGNING_KEY_FILE: keyFile,
        CLAIIM_WITNESS_DIR: path.join(dir, "witness"),
        // Heads are signed every 10 records, and not by the clock: the unsigned tail is the test's to make.
        CLAIIM_CHECKPOINT_EVERY_RECORDS: "10",
        CLAIIM_CHECKPOINT_EVERY_SECONDS: "3600",
      },
    });
    witness = path.join(dir, "witness", WITNESS_FILE);
    attacker = await openDatabase(kind, s.config.databaseUrl);
    await s.http.post("/v1/organizations").set(admin()).send({ slug: "acme", name: "Acme" }).expect(201);
    await s.http.post("/v1/humans").set(admin()).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
    const agent = (await s.http.post("/v1/agents").set(admin()).send({ organization: "acme", name: "deploy-bot", owner: "alice@acme.example", skills: [staging.skill] }).expect(201)).body;
    token = (await s.http.post(`/v1/agents/${agent.id}/credentials`).set(admin()).send({}).expect(201)).body.token;
    for (let i = 0; i < 35; i++) await decide();
    await s.claiim.checkpointer.idle();
    jwks = await saveJwks(s, dir);
    expect(await verify()).toMatchObject({ valid: true, witness: { heads_checked: expect.any(Number) } });
    expect((await verify()).witness.heads_checked).toBeGreaterThanOrEqual(3);
  }, 120_000);
  afterAll(async () => {
    await attacker?.close();
    await s?.stop();
  });

  /** What each kind of tampering does, and returns the record it makes bad; `problem` is what the server says of it. */
  const kinds: { name: string; problem: RegExp; owner?: false; tamper(): Promise<number> }[] = [
    {
      name: "modify a record, leaving its hash",
      problem: /^hash mismatch/,
      async tamper() {
        const m = await middle();
        await sql(attacker, "UPDATE chron_records SET content = REPLACE(content, '\"purpose\":\"release\"', '\"purpose\":\"forged\"') WHERE seq = $1", [m]);
        return m;
      },
    },
    {
      name: "modify a record and recompute its own hash",
      problem: /^writer's tag does not match/,
      async tamper() {
        const m = await middle();
        const [row] = (await records()).filter((r) => r.seq === m);
        const content = { ...(JSON.parse(row.content) as ChronContent), purpose: "forged" };
        await sql(attacker, "UPDATE chron_records SET content = $1, hash = $2 WHERE seq = $3", [canonicalize(content), recordHash(content as ChronContent, m, row.prev_hash), m]);
        return m;
      },
    },
    {
      name: "modify a record and recompute every later hash",
      problem: /^writer's tag does not match/,
      async tamper() {
        const m = await middle();
        await sql(attacker, "UPDATE chron_records SET content = REPLACE(content, '\"purpose\":\"release\"', '\"purpose\":\"forged\"') WHERE seq = $1", [m]);
        await rechain(m);
        return m;
      },
    },
    {
      name: "change a filter column only",
      problem: /^column decision disagrees/,
      async tamper() {
        const m = await middle();
        await sql(attacker, "UPDATE chron_records SET decision = 'deny' WHERE seq = $1", [m]);
        return m;
      },
    },
    {
      name: "re-serialise a record's content non-canonically",
      problem: /^content is not in canonical form/,
      async tamper() {
        const m = await middle();
        const [row] = (await records()).filter((r) => r.seq === m);
        await sql(attacker, "UPDATE chron_records SET content = $1 WHERE seq = $2", [JSON.stringify(JSON.parse(row.content), null, 1), m]);
        return m;
      },
    },
    {
      name: "delete a record in the middle",
      problem: /^sequence gap: expected record/,
      async tamper() {
        const m = await middle();
        await sql(attacker, "DELETE FROM chron_records WHERE seq = $1", [m]);
        return m;
      },
    },
    {
      name: "insert a forged record in the middle, leaving later hashes",
      problem: /^no writer's tag/,
      tamper: () => insertInTheMiddle(false),
    },
    {
      name: "insert a forged record in the middle, recomputing every later hash",
      problem: /^no writer's tag/,
      tamper: () => insertInTheMiddle(true),
    },
    {
      name: "swap two records' sequence numbers",
      problem: /^broken link/,
      async tamper() {
        const m = await middle();
        await sql(attacker, "UPDATE chron_records SET seq = -1 WHERE seq = $1", [m]);
        await sql(attacker, "UPDATE chron_records SET seq = $1 WHERE seq = $2", [m, m + 2]);
        await sql(attacker, "UPDATE chron_records SET seq = $1 WHERE seq = -1", [m + 2]);
        return m;
      },
    },
    {
      name: "append a well-formed record after the last checkpoint",
      problem: /^no writer's tag/,
      async tamper() {
        const rows = await records();
        const head = rows[rows.length - 1];
        const decision = rows.filter((r) => r.kind === "decision").pop()!;
        await insert("chron_records", forged(decision, head.seq + 1, head.hash));
        return head.seq + 1;
      },
    },
    {
      name: "change a checkpoint's signature",
      problem: /^forged checkpoint: checkpoint signature does not verify/,
      async tamper() {
        const [, cp] = await checkpoints();
        const [a, b, sig] = cp.jws.split(".");
        const flipped = (sig[0] === "A" ? "B" : "A") + sig.slice(1); // always a different first character
        await sql(attacker, "UPDATE chron_checkpoints SET jws = $1 WHERE seq = $2", [`${a}.${b}.${flipped}`, cp.seq]);
        return cp.seq;
      },
    },
    {
      name: "change a checkpoint's hash column",
      problem: /^forged checkpoint: its columns disagree/,
      async tamper() {
        const [, cp] = await checkpoints();
        await sql(attacker, "UPDATE chron_checkpoints SET hash = $1 WHERE seq = $2", ["0".repeat(64), cp.seq]);
        return cp.seq;
      },
    },
    {
      name: "delete the unsigned tail",
      problem: /^missing: records committed by this server/,
      async tamper() {
        const last = (await checkpoints()).pop()!.seq;
        expect((await records()).pop()!.seq).toBeGreaterThan(last);
        await sql(attacker, "DELETE FROM chron_records WHERE seq > $1", [last]);
        return last + 1;
      },
    },
    {
      name: "delete the last signed record and its checkpoint",
      problem: /^missing: the witness holds a tree head/,
      async tamper() {
        const head = (await records()).pop()!;
        expect((await checkpoints()).pop()!.seq).toBe(head.seq);
        await sql(attacker, "DELETE FROM chron_records WHERE seq = $1", [head.seq]);
        await sql(attacker, "DELETE FROM chron_checkpoints WHERE seq = $1", [head.seq]);
        return head.seq;
      },
    },
    {
      name: "delete a prefix through the prune window, without an archive",
      problem: /^missing: records 1\.\.\d+ are gone, and no signed chron\.pruned record accounts for them/,
      // With the application's own rights: no trigger is dropped, the delete guard lets it through.
      owner: false,
      async tamper() {
        const [, cp] = await checkpoints();
        await sql(attacker, "INSERT INTO chron_prune_window (up_to_seq) VALUES ($1)", [cp.seq]);
        await sql(attacker, "DELETE FROM chron_records WHERE seq <= $1", [cp.seq]);
        await sql(attacker, "DELETE FROM chron_checkpoints WHERE seq < $1", [cp.seq]);
        await sql(attacker, "DELETE FROM chron_prune_window WHERE up_to_seq = $1", [cp.seq]);
        return 1;
      },
    },
    {
      name: "rewrite from the middle and re-sign the checkpoints with a key taken from the database",
      problem: /^writer's tag does not match/,
      async tamper() {
        const m = await middle();
        // Every signing key the database holds is the token key's (and the bundle key's): the Chron key is not there.
        const keys = (await sql(attacker, "SELECT kid, purpose, private_key_pem FROM signing_keys")) as { kid: string; purpose: string; private_key_pem: string }[];
        expect(keys.map((k) => k.purpose)).not.toContain("chron-checkpoint");
        const stolen = keys.find((k) => k.purpose === "agent-token")!;
        await sql(attacker, "UPDATE chron_records SET content = REPLACE(content, '\"purpose\":\"release\"', '\"purpose\":\"forged\"') WHERE seq = $1", [m]);
        await rechain(m);
        const frontier = new MerkleFrontier();
        const hashes = new Map((await records()).map((r) => [r.seq, r.hash]));
        for (const cp of await checkpoints()) {
          while (frontier.size < cp.seq) frontier.append(hashes.get(frontier.size + 1)!);
          if (cp.seq < m) continue;
          const claims = { sequence: cp.seq, hash: hashes.get(cp.seq), timestamp: new Date().toISOString(), count: cp.seq, root: frontier.root() };
          const jws = jwt.sign(claims, stolen.private_key_pem, { algorithm: "ES256", keyid: stolen.kid, noTimestamp: true });
          await sql(attacker, "UPDATE chron_checkpoints SET hash = $1, kid = $2, jws = $3, frontier = $4 WHERE seq = $5", [claims.hash, stolen.kid, jws, frontier.serialize(), cp.seq]);
        }
        return m;
      },
    },
  ];

  test.each(kinds.map((k, i) => [i + 1, k.name, k] as const))("%i. %s: named by the server's verification, by claiim-verify --witness and by the next start", async (n, name, k) => {
    if (k.name === "delete the unsigned tail") {
      // A tail of records no head signed yet.
      for (let i = 0; i < 3; i++) await decide();
    }
    if (k.name === "delete the last signed record and its checkpoint") {
      const head = (await verify()).head;
      await s.claiim.checkpointer.at(head);
    }
    await s.claiim.checkpointer.idle();
    const before = await snapshot();
    try {
      const bad = k.owner === false ? await k.tamper() : await asDatabaseOwner(attacker, () => k.tamper());

      const found = await verify();
      expect({ valid: found.valid, first_bad: found.first_bad }).toEqual({ valid: false, first_bad: expect.objectContaining({ seq: bad, problem: expect.stringMatching(k.problem) }) });
      if (k.name === "append a well-formed record after the last checkpoint") {
        // The next record CLAIIM writes would build on it: the writer halts instead, decisions get 503, and so does readiness.
        await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(staging).expect(503);
        expect((await s.http.get("/readyz").expect(503)).body.detail).toMatch(new RegExp(`^Chron is halted: record ${bad} was not written by CLAIIM`));
      }

      const file = await downloadExport(s, s.admin, "format=ndjson", dir, `kind-${n}-${kind}.ndjson`);
      const offline = await claiimVerify(file, jwks, witness);
      expect({ code: offline.code, first: offline.out.split("\n")[0] }).toEqual({ code: 1, first: expect.stringMatching(new RegExp(`^FAILED at record ${bad}\\b`)) });

      await expect(s.restart()).rejects.toThrow(new RegExp(`^Chron does not verify, so CLAIIM will not start: record ${bad}: `));
    } finally {
      // The true chain back, whatever happened: the next kind starts from it.
      await restore(before);
      await s.restart();
    }
    expect(await verify()).toMatchObject({ valid: true, problem_count: 0 });
    void name;
  }, 60_000);

  test("the witness log held every signed head: each extends the one before, and an export of the whole chain verifies against it", async () => {
    await decide();
    await s.claiim.checkpointer.at((await verify()).head);
    const file = await downloadExport(s, s.admin, "format=ndjson", dir, `whole-${kind}.ndjson`);
    const ok = await claiimVerify(file, jwks, witness);
    expect(ok).toMatchObject({ code: 0, out: expect.stringMatching(/chain intact; witness: \d+ signed tree heads, each extending the one before, \d+ of them in the export's range and matching it/) });
    const lines = fs.readFileSync(witness, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.length).toBeGreaterThan(16);
    for (const [i, l] of lines.entries()) {
      expect(l).toMatchObject({ chron_witness: 1, tree_size: expect.any(Number), root: expect.stringMatching(/^[0-9a-f]{64}$/) });
      if (i > 0) expect(l.consistency).toMatchObject({ from_size: lines[i - 1].tree_size, from_root: lines[i - 1].root });
    }
  });
});
