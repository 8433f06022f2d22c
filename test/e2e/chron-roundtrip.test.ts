import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { downloadExport, saveJwks } from "../support/export";
import { claiimVerify } from "../support/verify-cli";
import { sql } from "../support/sql";
import { newEvent } from "../../src/chron/record";
import { isCleanText } from "../../src/lib/text";

// Every UTF-16 code unit (lone surrogates and NUL included), and whole code points.
const anyText = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((u) => String.fromCharCode(u)), minLength: 1, maxLength: 40 }),
  fc.string({ unit: "binary", minLength: 1, maxLength: 40 }),
);
const anyJson = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    anyText,
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(anyText, tie("value"), { maxKeys: 4 }),
  ),
})).value;

describe.each(databaseKinds())("Chron round trip of arbitrary text on %s", (kind) => {
  let s: TestServer;
  let dir: string;
  let token: string;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });

  beforeAll(async () => {
    s = await startTestServer(kind, { env: { CLAIIM_CHECKPOINT_EVERY_RECORDS: "50", CLAIIM_CHECKPOINT_EVERY_SECONDS: "3600" } });
    dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "roundtrip-"));
    await s.http.post("/v1/organizations").set(admin()).send({ slug: "acme", name: "Acme" }).expect(201);
    await s.http.post("/v1/humans").set(admin()).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
    const agent = (await s.http.post("/v1/agents").set(admin()).send({ organization: "acme", name: "bot", owner: "alice@acme.example", skills: [{ name: "deploy", version: "1.2.0" }] }).expect(201)).body;
    token = (await s.http.post(`/v1/agents/${agent.id}/credentials`).set(admin()).send({}).expect(201)).body.token;
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("any text an agent sends is decided and recorded exactly, or refused with a 4xx; never a 5xx", async () => {
    const accepted: { id: string; sent: Record<string, string> }[] = [];
    await fc.assert(
      fc.asyncProperty(anyText, anyText, anyText, fc.option(anyText, { nil: undefined }), async (action, resource, purpose, subject) => {
        const body = { action, resource, purpose, skill: { name: "deploy", version: "1.2.0" }, ...(subject === undefined ? {} : { on_behalf_of: { subject } }) };
        // JSON.stringify escapes lone surrogates, so they reach the server as an attacker would send them.
        const res = await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}`, "Content-Type": "application/json" }).send(JSON.stringify(body));
        const clean = [action, resource, purpose, ...(subject === undefined ? [] : [subject])].every(isCleanText);
        const fits = action.length <= 200 && resource.length <= 1000 && (subject === undefined || subject.length <= 320);
        if (clean && fits) {
          expect(res.status).toBe(200);
          accepted.push({ id: res.body.decision_id, sent: { action, resource, purpose, subject: subject ?? "" } });
        } else {
          expect([res.status, res.body.code]).toEqual([400, clean ? "validation_failed" : "invalid_text"]);
        }
      }),
      { numRuns: 150 },
    );
    expect(accepted.length).toBeGreaterThan(10);
    for (const { id, sent } of accepted) {
      const [row] = await sql(s.claiim.db, "SELECT action, content FROM chron_records WHERE id = $1", [id]);
      const content = JSON.parse(row.content as string);
      expect({ action: content.action, resource: content.resource, purpose: content.purpose, subject: content.on_behalf_of?.subject ?? "" }).toEqual(sent);
      // The column and the content agree exactly: nothing was re-encoded on the way in.
      expect(row.action).toBe(sent.action);
    }
  });

  test("any JSON value in a record's content (lone surrogates included) seals, stores, reads back, verifies, exports and verifies offline", async () => {
    await fc.assert(
      fc.asyncProperty(anyJson, anyJson, anyText, async (before, after, reason) => {
        const event = newEvent({ type: "test.roundtrip", actor: { type: "system", id: "test", name: "round trip" }, subject: { type: "test", id: "x", name: "x" }, before, after, reason });
        const [row] = await s.claiim.writer.commit([event]);
        const [stored] = await sql(s.claiim.db, "SELECT content, hash FROM chron_records WHERE seq = $1", [row.seq]);
        expect(stored).toMatchObject({ content: row.content, hash: row.hash });
        expect(JSON.parse(stored.content as string)).toEqual(JSON.parse(JSON.stringify(event)));
      }),
      { numRuns: 120 },
    );
    await s.claiim.checkpointer.idle();
    expect((await s.http.get("/v1/chron/verify").set(admin()).expect(200)).body).toMatchObject({ valid: true, problems: [] });
    await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send({ action: "deploy", resource: "staging", purpose: "p", skill: { name: "deploy", version: "1.2.0" } }).expect(200);
    await s.claiim.checkpointer.idle();
    const jwks = await saveJwks(s, dir);
    for (const format of ["ndjson", "csv", "json"]) {
      const file = await downloadExport(s, s.admin, `format=${format}`, dir, `all.${format}`);
      expect([format, await claiimVerify(file, jwks)]).toEqual([format, expect.objectContaining({ code: 0 })]);
    }
    const filtered = await downloadExport(s, s.admin, "format=ndjson&kind=event", dir, "events.ndjson");
    expect(await claiimVerify(filtered, jwks)).toMatchObject({ code: 0 });
  });
});
