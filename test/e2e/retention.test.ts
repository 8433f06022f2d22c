import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { databaseKinds } from "../support/databases";
import { claiimVerify } from "../support/verify-cli";
import { startTestServer, type TestServer } from "../support/claiim";
import { script, sql } from "../support/sql";

const staging = { action: "deploy", resource: "staging", purpose: "release", skill: { name: "deploy", version: "1.2.0" } };

describe.each(databaseKinds())("Chron retention on %s", (kind) => {
  let s: TestServer;
  let token: string;
  let dir: string;
  let jwks: string;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  const decide = () => s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(staging).expect(200);
  const cli = (file: string) => claiimVerify(file, jwks);
  const save = async (url: string, name: string) => {
    const res = await s.http.get(url).set(admin()).expect(200);
    const file = path.join(dir, name);
    fs.writeFileSync(file, res.text);
    return file;
  };

  beforeAll(async () => {
    // Heads every 5 records and not by the clock, so that which records are checkpoints does not depend on how fast the machine runs.
    s = await startTestServer(kind, { env: { CLAIIM_CHECKPOINT_EVERY_RECORDS: "5", CLAIIM_CHECKPOINT_EVERY_SECONDS: "3600" } });
    dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "retention-"));
    await s.http.post("/v1/organizations").set(admin()).send({ slug: "acme", name: "Acme" }).expect(201);
    await s.http.post("/v1/humans").set(admin()).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
    const agent = (await s.http.post("/v1/agents").set(admin()).send({ organization: "acme", name: "deploy-bot", owner: "alice@acme.example", skills: [staging.skill] }).expect(201)).body;
    token = (await s.http.post(`/v1/agents/${agent.id}/credentials`).set(admin()).send({}).expect(201)).body.token;
    for (let i = 0; i < 20; i++) await decide();
    await s.claiim.checkpointer.idle();
    jwks = path.join(dir, "jwks.json");
    fs.writeFileSync(jwks, JSON.stringify((await s.http.get("/.well-known/jwks.json")).body));
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("archive up to a checkpoint, verify the archive, delete the range; both parts verify on their own", async () => {
    const checkpoints = ((await sql(s.claiim.db, "SELECT seq FROM chron_checkpoints ORDER BY seq")) as { seq: number }[]).map((c) => Number(c.seq));
    // A checkpoint after the first whose next record is not one (heads signed a second apart while a slow start-up writes can be consecutive).
    const upTo = checkpoints.find((c, i) => i >= 1 && !checkpoints.includes(c + 1))!;
    const notOne = await s.http.post("/v1/chron/retention").set(admin()).send({ up_to_seq: upTo + 1, reason: "x" }).expect(400);
    expect(notOne.body).toMatchObject({ code: "not_a_checkpoint", detail: expect.stringContaining(String(upTo)) });

    const res = await s.http.post("/v1/chron/retention").set(admin()).send({ up_to_seq: upTo, reason: "older than the retention period" }).expect(200);
    expect(res.body).toMatchObject({ pruned: upTo, first_remaining_seq: upTo + 1, archive: { first_seq: 1, last_seq: upTo, records: upTo } });
    const archive = res.body.archive.file as string;
    expect(createHash("sha256").update(fs.readFileSync(archive)).digest("hex")).toBe(res.body.archive.sha256);
    expect(await cli(archive)).toMatchObject({ code: 0, out: expect.stringMatching(new RegExp(`^OK: ${upTo} records \\(1\\.\\.${upTo}\\)`)) });

    expect(Number((await sql(s.claiim.db, "SELECT MIN(seq) AS m FROM chron_records"))[0].m)).toBe(upTo + 1);
    const remaining = ((await sql(s.claiim.db, "SELECT seq FROM chron_checkpoints ORDER BY seq")) as { seq: number }[]).map((c) => Number(c.seq));
    expect(remaining.slice(0, checkpoints.filter((c) => c >= upTo).length)).toEqual(checkpoints.filter((c) => c >= upTo));
    expect(remaining[0]).toBe(upTo);
    const verified = (await s.http.get("/v1/chron/verify").set(admin()).expect(200)).body;
    expect(verified).toMatchObject({ valid: true });
    const [pruned] = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin())).body.records.filter((r: { type: string }) => r.type === "chron.pruned");
    expect(pruned).toMatchObject({ reason: "older than the retention period", after: { first_seq: upTo + 1, anchor_checkpoint: upTo, archive: { sha256: res.body.archive.sha256 } } });
    const diag = {
      target: await sql(s.claiim.db, "SELECT seq FROM chron_records WHERE seq = $1", [upTo + 1]),
      windows: await sql(s.claiim.db, "SELECT * FROM chron_prune_window"),
      triggers: kind === "sqlite" ? await sql(s.claiim.db, "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'") : [],
    };
    const outcome = await script(s.claiim.db, `DELETE FROM chron_records WHERE seq = ${upTo + 1}`).then(
      () => "succeeded",
      (err: Error) => err.message,
    );
    expect([outcome, diag]).toEqual([expect.stringMatching(/append-only/), diag]);
    const diag2 = {
      checkpoints: await sql(s.claiim.db, "SELECT seq FROM chron_checkpoints ORDER BY seq"),
      windows: await sql(s.claiim.db, "SELECT * FROM chron_prune_window"),
    };
    const outcome2 = await script(s.claiim.db, `DELETE FROM chron_checkpoints WHERE seq = ${upTo}`).then(
      () => "succeeded",
      (err: Error) => err.message,
    );
    expect([outcome2, upTo, diag2]).toEqual([expect.stringMatching(/append-only/), upTo, diag2]);
    expect((await s.http.post("/v1/chron/retention").set(admin()).send({ up_to_seq: checkpoints[0], reason: "again" }).expect(409)).body.code).toBe("already_pruned");
  });

  test("after pruning, the chain goes on, and both kinds of export still verify offline", async () => {
    for (let i = 0; i < 7; i++) await decide();
    await s.claiim.checkpointer.idle();
    expect((await s.http.get("/v1/chron/verify").set(admin())).body.valid).toBe(true);
    const contiguous = await save("/v1/chron/export", "rest.ndjson");
    expect(JSON.parse(fs.readFileSync(contiguous, "utf8").split("\n")[0]).first_seq).toBeGreaterThan(1);
    expect(await cli(contiguous)).toMatchObject({ code: 0 });
    const filtered = await save("/v1/chron/export?organization=acme&kind=decision", "acme.ndjson");
    expect(JSON.parse(fs.readFileSync(filtered, "utf8").split("\n")[0])).toMatchObject({ selection: "merkle" });
    expect(await cli(filtered)).toMatchObject({ code: 0 });
  });

  test("a restart resumes from the retention checkpoint", async () => {
    await s.restart();
    await decide();
    await s.claiim.checkpointer.idle();
    expect((await s.http.get("/v1/chron/verify").set(admin())).body).toMatchObject({ valid: true });
  });
});
