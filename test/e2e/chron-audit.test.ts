import fs from "node:fs";
import path from "node:path";
import { generateKeyPairSync } from "node:crypto";
import jwt from "jsonwebtoken";
import { databaseKinds } from "../support/databases";
import { claiimVerify } from "../support/verify-cli";
import { downloadExport, saveJwks } from "../support/export";
import { startTestServer, type TestServer } from "../support/claiim";
import { asDatabaseOwner, script, sql } from "../support/sql";
import { canonicalize } from "../../src/lib/canonical";
import { recordHash, type ChronContent } from "../../src/chron/record";
import { jwksKeys, verifyCheckpoint } from "../../src/chron/checkpoint-jws";

const staging = { action: "deploy", resource: "staging", purpose: "release", skill: { name: "deploy", version: "1.2.0" } };

describe.each(databaseKinds())("Chron audit on %s", (kind) => {
  let s: TestServer;
  let dir: string;
  let jwksFile: string;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  const verify = async () => (await s.http.get("/v1/chron/verify").set(admin()).expect(200)).body;
  const cli = (file: string) => claiimVerify(file, jwksFile);
  const exportTo = (query: string, name: string) => downloadExport(s, s.admin, query, dir, name);

  beforeAll(async () => {
    s = await startTestServer(kind, { env: { CLAIIM_CHECKPOINT_EVERY_RECORDS: "10", CLAIIM_CHECKPOINT_EVERY_SECONDS: "3600", CLAIIM_EXPORT_JSON_MAX_RECORDS: "40" } });
    dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "export-"));
    await s.http.post("/v1/organizations").set(admin()).send({ slug: "acme", name: "Acme" }).expect(201);
    await s.http.post("/v1/humans").set(admin()).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
    const agent = (await s.http.post("/v1/agents").set(admin()).send({ organization: "acme", name: "deploy-bot", owner: "alice@acme.example", skills: [staging.skill] }).expect(201)).body;
    const token = (await s.http.post(`/v1/agents/${agent.id}/credentials`).set(admin()).send({}).expect(201)).body.token;
    await s.http.post("/v1/organizations").set(admin()).send({ slug: "globex", name: "Globex" }).expect(201);
    await s.http.post("/v1/humans").set(admin()).send({ organization: "globex", name: "Gus", email: "gus@globex.example" }).expect(201);
    const other = (await s.http.post("/v1/agents").set(admin()).send({ organization: "globex", name: "g-bot", owner: "gus@globex.example", skills: [staging.skill] }).expect(201)).body;
    const otherToken = (await s.http.post(`/v1/agents/${other.id}/credentials`).set(admin()).send({}).expect(201)).body.token;
    for (let i = 0; i < 36; i++) {
      await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(i % 3 ? staging : { ...staging, resource: "production" }).expect(200);
      if (i % 4 === 0) await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${otherToken}` }).send(staging).expect(200);
    }
    await s.claiim.checkpointer.idle();
    jwksFile = await saveJwks(s, dir);
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("the database itself refuses UPDATE, DELETE (and on PostgreSQL TRUNCATE) of Chron", async () => {
    const count = async () => Number((await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records"))[0].n);
    const before = await count();
    const attempts = [
      "UPDATE chron_records SET decision = 'allow' WHERE seq = 1",
      "DELETE FROM chron_records WHERE seq = 1",
      "UPDATE chron_checkpoints SET hash = 'x'",
      "DELETE FROM chron_checkpoints",
      ...(kind === "postgresql" ? ["TRUNCATE chron_records", "TRUNCATE chron_checkpoints"] : []),
    ];
    const triggers = kind === "sqlite" ? await sql(s.claiim.db, "SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name") : [];
    for (const statement of attempts) {
      const outcome = await script(s.claiim.db, statement).then(
        () => "succeeded",
        (err: Error) => err.message,
      );
      expect([statement, outcome, triggers]).toEqual([statement, expect.stringMatching(/append-only/), triggers]);
    }
    expect(await count()).toBe(before);
    expect((await verify()).valid).toBe(true);
  });

  test("checkpoints are signed every N records with a key from the JWKS", async () => {
    const rows = (await sql(s.claiim.db, "SELECT seq, hash, jws FROM chron_checkpoints ORDER BY seq")) as { seq: number; hash: string; jws: string }[];
    expect(rows.length).toBeGreaterThanOrEqual(4);
    const keys = jwksKeys(JSON.parse(fs.readFileSync(jwksFile, "utf8")));
    let previous = 0;
    for (const row of rows) {
      const claims = verifyCheckpoint(row.jws, keys);
      expect(claims).toMatchObject({ sequence: Number(row.seq), hash: row.hash, count: Number(row.seq), timestamp: expect.any(String) });
      expect(Number(row.seq) - previous).toBeGreaterThanOrEqual(10);
      previous = Number(row.seq);
    }
    const result = await verify();
    expect(result).toMatchObject({ valid: true, checkpoints: { checked: rows.length, last: { seq: Number(rows[rows.length - 1].seq) } } });
  });

  test("a rewritten chain, a forged checkpoint, and a checkpoint past the end are all caught", async () => {
    await asDatabaseOwner(s.claiim.db, async () => {
      const [cp] = (await sql(s.claiim.db, "SELECT seq, jws FROM chron_checkpoints ORDER BY seq LIMIT 1 OFFSET 1")) as { seq: number; jws: string }[];
      const target = Number(cp.seq) - 3;
      const originals = (await sql(s.claiim.db, "SELECT seq, content, prev_hash, hash, decision FROM chron_records WHERE seq >= $1 ORDER BY seq", [target])) as {
        seq: number;
        content: string;
        prev_hash: string;
        hash: string;
        decision: string | null;
      }[];
      // The attacker changes one record and recomputes every hash after it: the chain is consistent again...
      let prev = originals[0].prev_hash;
      for (const [i, row] of originals.entries()) {
        const content = JSON.parse(row.content) as ChronContent & { reasons?: string[] };
        if (i === 0) content.reasons = ["rewritten by an administrator"];
        const hash = recordHash(content, Number(row.seq), prev);
        await sql(s.claiim.db, "UPDATE chron_records SET content = $1, prev_hash = $2, hash = $3 WHERE seq = $4", [canonicalize(content), prev, hash, row.seq]);
        prev = hash;
      }
      // ...but it no longer matches what CLAIIM signed, and the first rewritten record is named by its writer's tag.
      const found = await verify();
      expect(found).toMatchObject({ valid: false, first_bad: { seq: target, problem: expect.stringMatching(/^writer's tag does not match/) } });
      expect(found.problems).toContainEqual(expect.objectContaining({ seq: Number(cp.seq), problem: "record disagrees with its signed checkpoint" }));
      for (const row of originals) await sql(s.claiim.db, "UPDATE chron_records SET content = $1, prev_hash = $2, hash = $3 WHERE seq = $4", [row.content, row.prev_hash, row.hash, row.seq]);
      expect((await verify()).valid).toBe(true);

      const [a, b, c] = cp.jws.split(".");
      const forged = `${a}.${Buffer.from(JSON.stringify({ ...(jwt.decode(cp.jws) as object), hash: "0".repeat(64) })).toString("base64url")}.${c}`;
      await sql(s.claiim.db, "UPDATE chron_checkpoints SET jws = $1 WHERE seq = $2", [forged, cp.seq]);
      expect(await verify()).toMatchObject({ valid: false, first_bad: { seq: Number(cp.seq), problem: expect.stringMatching(/^forged checkpoint: checkpoint signature does not verify/) } });
      await sql(s.claiim.db, "UPDATE chron_checkpoints SET jws = $1 WHERE seq = $2", [`${a}.${b}.${c}`, cp.seq]);

      const stranger = jwt.sign({ sequence: Number(cp.seq), hash: "x", timestamp: "t", count: 1 }, generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey, { algorithm: "ES256", keyid: "stranger", noTimestamp: true });
      await sql(s.claiim.db, "UPDATE chron_checkpoints SET jws = $1 WHERE seq = $2", [stranger, cp.seq]);
      expect(await verify()).toMatchObject({ valid: false, first_bad: { problem: expect.stringMatching(/unknown key/) } });
      await sql(s.claiim.db, "UPDATE chron_checkpoints SET jws = $1 WHERE seq = $2", [cp.jws, cp.seq]);

      const [last] = (await sql(s.claiim.db, "SELECT seq FROM chron_checkpoints ORDER BY seq DESC LIMIT 1")) as { seq: number }[];
      const tail = await sql(s.claiim.db, "SELECT * FROM chron_records WHERE seq >= $1 ORDER BY seq", [last.seq]);
      await sql(s.claiim.db, "DELETE FROM chron_records WHERE seq >= $1", [last.seq]);
      expect(await verify()).toMatchObject({ valid: false, first_bad: { seq: Number(last.seq), problem: expect.stringMatching(/^missing: signed checkpoint/) } });
      for (const row of tail) {
        const cols = Object.keys(row);
        await sql(s.claiim.db, `INSERT INTO chron_records (${cols.join(", ")}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(", ")})`, Object.values(row));
      }
    });
    expect((await verify()).valid).toBe(true);
  });

  test("an NDJSON export verifies offline, and every corrupted byte makes it fail", async () => {
    const file = await exportTo("format=ndjson", "all.ndjson");
    const ok = await cli(file);
    expect(ok).toMatchObject({ code: 0, out: expect.stringMatching(/^OK: \d+ records \(1\.\.\d+\), \d+ signed checkpoints, chain intact/) });

    const text = fs.readFileSync(file, "utf8");
    const lines = text.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ chron_export: "header", selection: "contiguous", first_seq: 1, exported_by: { type: "api_key" }, signature: expect.any(String) });
    expect(lines[lines.length - 1]).toMatchObject({ chron_export: "trailer", complete: true, count: lines.length - 2 });
    expect(lines[0].checkpoints[lines[0].checkpoints.length - 1].seq).toBe(lines[0].last_seq);

    const positions = Array.from({ length: 60 }, (_, i) => Math.floor(((i + 0.5) * text.length) / 60));
    const failures: string[] = [];
    for (const pos of positions) {
      const c = text[pos];
      const swapped = /[0-9]/.test(c) ? String((Number(c) + 1) % 10) : /[a-z]/.test(c) ? (c === "z" ? "a" : String.fromCharCode(c.charCodeAt(0) + 1)) : /[A-Z]/.test(c) ? (c === "Z" ? "A" : String.fromCharCode(c.charCodeAt(0) + 1)) : c === "x" ? "y" : "x";
      const corrupted = path.join(dir, `corrupt-${pos}.ndjson`);
      fs.writeFileSync(corrupted, text.slice(0, pos) + swapped + text.slice(pos + 1));
      const res = await cli(corrupted);
      if (res.code !== 1 || !/^FAILED/.test(res.out)) failures.push(`byte ${pos} (${JSON.stringify(c)}→${JSON.stringify(swapped)}): ${res.code} ${res.out.slice(0, 120)}`);
    }
    expect(failures).toEqual([]);

    const truncated = path.join(dir, "truncated.ndjson");
    fs.writeFileSync(truncated, text.split("\n").slice(0, 20).join("\n") + "\n");
    expect(await cli(truncated)).toMatchObject({ code: 1, out: expect.stringMatching(/no trailer: the export is truncated/) });
    const otherJwks = path.join(dir, "other-jwks.json");
    fs.writeFileSync(otherJwks, JSON.stringify({ keys: [] }));
    expect(await claiimVerify(file, otherJwks)).toMatchObject({ code: 1, out: expect.stringMatching(/unknown key/) });
    // Sixty-odd runs of the offline verifier, each its own process: allow for a machine under load.
  }, 240_000);

  test("CSV and JSON exports verify too; a time range exports the records between, contiguously", async () => {
    expect((await cli(await exportTo("format=csv", "all.csv"))).code).toBe(0);
    expect((await cli(await exportTo("format=json&from_seq=1&to_seq=30", "part.json"))).code).toBe(0);
    const rows = (await sql(s.claiim.db, "SELECT seq, ts_ms FROM chron_records ORDER BY seq")) as { seq: number; ts_ms: number }[];
    const from = new Date(Number(rows[10].ts_ms)).toISOString();
    const to = new Date(Number(rows[25].ts_ms)).toISOString();
    const file = await exportTo(`format=ndjson&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`, "range.ndjson");
    const header = JSON.parse(fs.readFileSync(file, "utf8").split("\n")[0]);
    expect(header).toMatchObject({ filters: { from, to }, first_seq: expect.any(Number) });
    expect(header.first_seq).toBeLessThanOrEqual(Number(rows[10].seq));
    expect(header.count).toBe(header.last_seq - header.first_seq + 1);
    expect(await cli(file)).toMatchObject({ code: 0 });
    const bySeq = await exportTo("format=ndjson&from_seq=5&to_seq=17", "seq.ndjson");
    expect(JSON.parse(fs.readFileSync(bySeq, "utf8").split("\n")[0])).toMatchObject({ first_seq: 5, last_seq: 17, count: 13 });
    expect(await cli(bySeq)).toMatchObject({ code: 0, out: expect.stringMatching(/^OK: 13 records \(5\.\.17\)/) });
  });

  test("the summary counts allows and denies per day, by agent, accountable human, action and policy version", async () => {
    const records = (await s.http.get("/v1/chron/records?kind=decision&organization=acme&limit=1000").set(admin())).body.records as {
      timestamp: string;
      decision: string;
      agent: { id: string };
      accountable_human: { id: string };
      action: string;
      policy: { version: number };
    }[];
    const count = (d: string) => records.filter((r) => r.decision === d).length;
    const tally = { allow: count("allow"), deny: count("deny"), approval_required: count("approval_required") };
    expect(tally.allow + tally.deny + tally.approval_required).toBe(records.length);
    expect(tally.approval_required).toBeGreaterThan(0);
    const res = await s.http.get("/v1/chron/summary?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&organization=acme").set(admin()).expect(200);
    // Production deploys asked for one approval, reused by every later ask of the same request.
    expect(res.body.totals).toEqual({ ...tally, approvals: { requested: 1, approved: 0, rejected: 0, expired: 0, used: 0 } });
    const today = records[0].timestamp.slice(0, 10);
    const day = res.body.days.find((d: { day: string }) => d.day === today);
    expect(day.approvals).toEqual({ requested: 1, approved: 0, rejected: 0, expired: 0, used: 0 });
    expect(day.by_agent).toEqual([{ agent_id: records[0].agent.id, agent_name: "deploy-bot", ...tally }]);
    expect(day.by_accountable_human).toEqual([{ human_id: records[0].accountable_human.id, email: "alice@acme.example", ...tally }]);
    expect(day.by_action).toEqual([{ action: "deploy", ...tally }]);
    expect(day.by_policy_version).toEqual([{ version: 1, ...tally }]);
    const none = await s.http.get("/v1/chron/summary?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z").set(admin()).expect(200);
    expect(none.body).toMatchObject({ totals: { allow: 0, deny: 0, approval_required: 0 }, days: [] });
    expect((await s.http.get("/v1/chron/summary?from=2001-01-01T00:00:00Z&to=2000-01-01T00:00:00Z").set(admin()).expect(400)).body.code).toBe("range_inverted");
    expect((await s.http.get("/v1/chron/summary").set(admin()).expect(400)).body.errors.map((e: { path: string }) => e.path).sort()).toEqual(["from", "to"]);
  });

  test("exports are recorded in Chron; bad requests get specific problems", async () => {
    const events = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin())).body.records.filter((r: { type: string }) => r.type === "chron.exported");
    expect(events.length).toBeGreaterThanOrEqual(5);
    expect(events[0]).toMatchObject({ actor: { type: "api_key" }, after: { format: "ndjson", first_seq: 1 } });
    expect((await s.http.get("/v1/chron/export?format=xml").set(admin()).expect(400)).body.errors[0].path).toBe("format");
    expect((await s.http.get("/v1/chron/export?from_seq=9&to_seq=3").set(admin()).expect(400)).body.code).toBe("range_inverted");
    const big = await s.http.get("/v1/chron/export?format=json").set(admin()).expect(413);
    expect(big.body).toMatchObject({ code: "export_too_large_for_json", detail: expect.stringMatching(/format=ndjson/) });
  });

  test("a filtered export carries a Merkle inclusion proof per record against a signed tree head, and verifies offline", async () => {
    const file = await exportTo("format=ndjson&organization=globex", "globex.ndjson");
    const lines = fs.readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const [header, ...rest] = lines;
    const records = rest.slice(0, -1);
    expect(header).toMatchObject({ selection: "merkle", filters: { organization: "globex" }, tree_head: { tree_size: expect.any(Number), root: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    expect(records.length).toBe(header.count);
    expect(records.length).toBeGreaterThan(5);
    expect(records.every((r: { organization: { slug: string }; merkle_proof: { leaf_index: number } }) => r.organization.slug === "globex")).toBe(true);
    expect(await cli(file)).toMatchObject({ code: 0, out: expect.stringMatching(new RegExp(`^OK: ${records.length} records`)) });
    expect((await cli(await exportTo("format=csv&organization=globex&decision=allow", "globex.csv"))).code).toBe(0);
    expect((await cli(await exportTo("format=json&organization=globex&kind=decision", "globex.json"))).code).toBe(0);

    // A proof moved to another record, or a digit changed in one, fails.
    const text = fs.readFileSync(file, "utf8");
    const second = JSON.stringify(records[1].merkle_proof.audit_path);
    const swapped = text.replace(second, JSON.stringify(records[2].merkle_proof.audit_path));
    fs.writeFileSync(path.join(dir, "swapped.ndjson"), swapped);
    expect(await cli(path.join(dir, "swapped.ndjson"))).toMatchObject({ code: 1, out: expect.stringMatching(/Merkle inclusion proof does not lead to the signed root/) });
    const hex = records[3].merkle_proof.audit_path[0] as string;
    fs.writeFileSync(path.join(dir, "flipped.ndjson"), text.replace(hex, (hex[0] === "0" ? "1" : "0") + hex.slice(1)));
    expect((await cli(path.join(dir, "flipped.ndjson"))).code).toBe(1);
  });

  test("a key confined to one organisation exports that organisation's records only, with proofs", async () => {
    const acmeKey = (await s.http.post("/v1/api-keys").set(admin()).send({ name: "acme audit", role: "auditor", organization: "acme" }).expect(201)).body.secret;
    const res = await s.http.get("/v1/chron/export").set({ Authorization: `Bearer ${acmeKey}` }).expect(200);
    const lines = res.text.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ selection: "merkle", filters: { organization: "acme" }, exported_by: { name: "acme audit" } });
    expect(lines.slice(1, -1).every((r: { organization: { slug: string } }) => r.organization.slug === "acme")).toBe(true);
    expect((await s.http.get("/v1/chron/export?organization=globex").set({ Authorization: `Bearer ${acmeKey}` }).expect(404)).body.code).toBe("organization_not_found");
    const file = path.join(dir, "acme-only.ndjson");
    fs.writeFileSync(file, res.text);
    expect((await cli(file)).code).toBe(0);
  });
});
