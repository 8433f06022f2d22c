import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { accessToken, DEPLOY_SKILL, registerDeployBot, type TestAgent } from "../support/agents";
import { sql } from "../support/sql";
import { until } from "../support/until";
import { freePort } from "../support/browser";
import { nodeEnv } from "../support/process";

const ROOT = path.resolve(__dirname, "../..");
const staging = { action: "deploy", resource: "staging", purpose: "release", skill: DEPLOY_SKILL };
const production = { ...staging, resource: "production" };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

// WARNING: each test starts the command several times as its own process through tsx, about 2 s of
// CPU each; on a 2-core machine shared with other work (load 20 and more) one start took 12 s, and
// tests ran past jest's 60 s. The bound is for a hung command, not a slow machine.
jest.setTimeout(300_000);

/**
 * Runs `claiim` as an operator would (src/cli/main.ts through tsx, as bin/claiim runs the compiled
 * one), with only the environment given: never the test's own.
 */
function claiim(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const entry = `require(${JSON.stringify(path.join(ROOT, "src/cli/main.ts"))}).main(["node", "claiim", ...process.argv.slice(1)])`;
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", "-e", entry, ...args], { cwd: ROOT, env: { ...nodeEnv(), PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

/** An operator's error: one line naming the problem, never a stack trace. */
function expectOneSentence(r: Run, code: number, pattern: RegExp): void {
  expect(r.code).toBe(code);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
  expect(r.stderr).toMatch(/^claiim: /);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe.each(databaseKinds())("the claiim command against CLAIIM on %s", (kind) => {
  let s: TestServer;
  let bot: TestAgent;
  let env: Record<string, string>;
  let dir: string;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });

  beforeAll(async () => {
    s = await startTestServer(kind);
    bot = await registerDeployBot(s);
    env = { CLAIIM_URL: s.claiim.url, CLAIIM_TOKEN: s.admin };
    dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "cli-"));
  });
  afterAll(() => s?.stop());

  test("status: ready, the active policy, Chron's writer and checkpoints, approvals waiting", async () => {
    const r = await claiim(["status"], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`CLAIIM at ${s.claiim.url}: ready`);
    expect(r.stdout).toMatch(/^policy: version 1 active; \d+ evaluation workers/m);
    expect(r.stdout).toMatch(/^chron writer: ok, 0 queued/m);
    expect(r.stdout).toMatch(/^chron checkpoints: ok, last signed at record \d+/m);
    const json = JSON.parse((await claiim(["status", "--json"], env)).stdout);
    expect(json).toMatchObject({ url: s.claiim.url, ready: true, policy: { active_version: 1 } });
  });

  test("errors are one sentence with the documented exit status: 3 unreachable, 2 misuse, 1 refused", async () => {
    const closed = await freePort();
    expectOneSentence(await claiim(["status"], { CLAIIM_URL: `http://127.0.0.1:${closed}`, CLAIIM_TOKEN: "x" }), 3, new RegExp(`cannot reach CLAIIM at http://127\\.0\\.0\\.1:${closed} \\(connection refused\\): is it running there\\? Set CLAIIM_URL or --url`));
    // Without CLAIIM_URL, HOST and PORT say where CLAIIM listens, as they do for CLAIIM itself.
    const port = new URL(s.claiim.url).port;
    expect((await claiim(["status"], { PORT: port, CLAIIM_TOKEN: s.admin })).code).toBe(0);
    expectOneSentence(await claiim(["status"], { CLAIIM_URL: s.claiim.url, CLAIIM_DATA_DIR: dir }), 2, /no credential: set CLAIIM_TOKEN, or give --token-file/);
    expectOneSentence(await claiim(["status"], { CLAIIM_URL: "ftp://example", CLAIIM_TOKEN: "x" }), 2, /not an http\(s\) URL/);
    expectOneSentence(await claiim(["status"], { CLAIIM_URL: s.claiim.url, CLAIIM_TOKEN: "claiim_wrong" }), 1, /refused \(401 api_key_invalid\)/);
    const unknown = await claiim(["agents", "list", "--colour"], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown option '--colour'/);
  });

  test("publish: a new policy version from a folder, activated, in Chron; a broken policy is refused with OPA's error", async () => {
    const r = await claiim(["publish", "--dir", "rego", "--message", "from the CLI", "--activate"], env);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^published version 2 \(2-sha256:[0-9a-f]{64}\), active; parent 1$/m);
    expect((await s.http.get("/v1/policies/status").set(admin()).expect(200)).body).toMatchObject({ active_version: 2 });
    const [row] = await sql(s.claiim.db, "SELECT content FROM chron_records WHERE kind = 'event' AND action = 'policy.published' ORDER BY seq DESC LIMIT 1");
    expect(JSON.parse(row.content as string)).toMatchObject({ type: "policy.published", subject: { type: "policy", id: "2" } });

    const broken = path.join(dir, "broken");
    fs.cpSync(path.join(ROOT, "rego"), broken, { recursive: true });
    const main = fs.readdirSync(path.join(broken, "claiim")).find((f) => f.endsWith(".rego") && !f.endsWith("_test.rego"))!;
    fs.appendFileSync(path.join(broken, "claiim", main), "\nthis is not rego {\n");
    const refused = await claiim(["publish", "--dir", broken], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^claiim: refused \(422 policy_syntax_error\): /);
    expect(refused.stderr).toMatch(new RegExp(`claiim/${main}:\\d+:\\d+: `));
    expect(refused.stderr).not.toMatch(/\n\s+at /);
    expectOneSentence(await claiim(["publish", "--dir", path.join(dir, "none")], env), 2, /no folder/);
  });

  test("export: an interrupted NDJSON export resumes by sequence into a file byte-identical to an uninterrupted one, which verify accepts offline; a changed byte it refuses", async () => {
    const token = await accessToken(s, bot);
    for (let i = 0; i < 30; i++) await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(staging).expect(200);
    const whole = path.join(dir, "whole.ndjson");
    const r = await claiim(["export", "--out", whole, "--to-seq", "40"], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^exported 40 records \(1\.\.40\) to /);
    expect(fs.existsSync(`${whole}.part`)).toBe(false);

    // What a cut connection leaves: the header, some records and half a line, in <out>.part.
    const text = fs.readFileSync(whole, "utf8");
    const lines = text.split("\n");
    const cut = path.join(dir, "cut.ndjson");
    fs.writeFileSync(`${cut}.part`, lines.slice(0, 18).join("\n") + "\n" + lines[18].slice(0, 25));
    // Records committed meanwhile are not part of the range the export started with.
    for (let i = 0; i < 3; i++) await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(staging).expect(200);
    const resumed = await claiim(["export", "--out", cut, "--to-seq", "40"], env);
    expect(resumed.code).toBe(0);
    expect(fs.readFileSync(cut, "utf8")).toBe(text);

    const jwks = path.join(dir, "jwks.json");
    fs.writeFileSync(jwks, JSON.stringify((await s.http.get("/.well-known/jwks.json").expect(200)).body));
    const ok = await claiim(["verify", cut, "--jwks", jwks]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^OK: 40 records \(1\.\.40\), \d+ signed checkpoints?, chain intact/);
    const tampered = path.join(dir, "tampered.ndjson");
    fs.writeFileSync(tampered, text.replace('"resource":"staging"', '"resource":"stagin9"'));
    const bad = await claiim(["verify", tampered, "--jwks", jwks]);
    expect(bad.code).toBe(1);
    expect(bad.stdout + bad.stderr).toMatch(/hash/i);
  });

  test("agents list and suspend: the kill switch, recorded with the reason; the agent is refused from then on", async () => {
    const list = await claiim(["agents", "list", "--organization", bot.orgSlug], env);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^ID +ORGANIZATION +NAME +OWNER +STATUS +SKILLS\\n${bot.agentId} +acme +deploy-bot +alice@acme\\.example +active +deploy@1\\.2\\.0\\n$`));
    const token = await accessToken(s, bot);
    const r = await claiim(["agents", "suspend", "deploy-bot", "--reason", "leaked its secret"], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`suspended deploy-bot (${bot.agentId}) in acme: leaked its secret\n`);
    const refused = await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(staging).expect(200);
    expect(refused.body).toMatchObject({ decision: "deny" });
    const [event] = await sql(s.claiim.db, "SELECT content FROM chron_records WHERE kind = 'event' AND agent_id = $1 ORDER BY seq DESC LIMIT 1", [bot.agentId]);
    expect(JSON.parse(event.content as string)).toMatchObject({ type: "agent.suspended", reason: "leaked its secret" });
    expect(JSON.parse((await claiim(["agents", "list", "--status", "suspended", "--json"], env)).stdout).map((a: { id: string }) => a.id)).toEqual([bot.agentId]);
    expectOneSentence(await claiim(["agents", "suspend", "nobody-bot", "--reason", "x"], env), 1, /no agent named nobody-bot/);
  });

  test("approvals list, approve: what waits, and the answer the agent then uses", async () => {
    const other = await registerDeployBot(s, "globex", "release-bot");
    const agent = { Authorization: `Bearer ${await accessToken(s, other)}` };
    const asked = (await s.http.post("/v1/decisions").set(agent).send(production).expect(200)).body;
    expect(asked.decision).toBe("approval_required");
    const id = asked.approval.id as string;
    const list = await claiim(["approvals", "list"], env);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(id);
    expect(list.stdout).toMatch(/production/);
    // A chat bridge's approver key, confined to the organisation, relays Alice's answer.
    const bridge = (await s.http.post("/v1/api-keys").set(admin()).send({ name: "chat bridge", role: "approver", organization: "globex" }).expect(201)).body.secret;
    const r = await claiim(["approvals", "approve", id, "--reason", "release reviewed", "--on-behalf-of", "alice@globex.example"], { ...env, CLAIIM_TOKEN: bridge });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${id}: approved by .+: release reviewed\\n$`));
    expect((await s.http.post("/v1/decisions").set(agent).send({ ...production, approval_id: id }).expect(200)).body.decision).toBe("allow");
    expectOneSentence(await claiim(["approvals", "reject", id, "--reason", "too late", "--on-behalf-of", "alice@globex.example"], { ...env, CLAIIM_TOKEN: bridge }), 1, /refused \(409 /);
  });

  test("admin recover: with every admin credential lost, mints an admin key in the database, recorded in Chron with the operator and the reason", async () => {
    const out = path.join(dir, "recovered.token");
    const hostEnv = { DATABASE_URL: s.config.databaseUrl, CLAIIM_DATA_DIR: s.config.dataDir };
    const misuse = await claiim(["admin", "recover", "--out", out], hostEnv);
    expect(misuse.code).toBe(2);
    expect(misuse.stderr).toMatch(/^error: required option '-r, --reason <text>' not specified/);
    const r = await claiim(["admin", "recover", "--reason", "the only admin key expired", "--out", out], hostEnv);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^created administrator key [0-9a-f-]+ \("recovered administrator", expires \d{4}-.+\), recorded in Chron as record \d+ with your reason\./);
    expect(fs.statSync(out).mode & 0o777).toBe(0o600);
    const secret = fs.readFileSync(out, "utf8").trim();
    const [row] = await sql(s.claiim.db, "SELECT content FROM chron_records WHERE kind = 'event' ORDER BY seq DESC LIMIT 1");
    const record = JSON.parse(row.content as string);
    expect(record).toMatchObject({ type: "api_key.created", actor: { type: "system", id: "claiim-admin-recover", name: expect.stringMatching(/^operator .+@.+ \(claiim admin recover\)$/) }, reason: "the only admin key expired" });
    expect(JSON.stringify(record)).not.toContain(secret);
    // Never over an existing file, which may hold someone's key.
    expectOneSentence(await claiim(["admin", "recover", "--reason", "again", "--out", out], hostEnv), 2, /exists: move it away, or give --out/);
    // A running CLAIIM reads keys at start: after a restart, the key works, and the chain is whole.
    await s.restart();
    await until("the recovered key to work", async () => (await s.http.get("/v1/agents").set({ Authorization: `Bearer ${secret}` })).status === 200);
    expect((await s.http.get("/v1/chron/verify").set({ Authorization: `Bearer ${secret}` }).expect(200)).body.valid).toBe(true);
    expectOneSentence(await claiim(["admin", "recover", "--reason", "x", "--out", path.join(dir, "y")], { DATABASE_URL: `file:${path.join(dir, "absent", "claiim.db")}` }), 3, /there is no database at .*absent\/claiim\.db/);
    expect(fs.existsSync(path.join(dir, "absent"))).toBe(false);
    // An empty database (CLAIIM never started on it) gets no key either.
    fs.writeFileSync(path.join(dir, "empty.db"), "");
    expectOneSentence(await claiim(["admin", "recover", "--reason", "x", "--out", path.join(dir, "y")], { DATABASE_URL: `file:${path.join(dir, "empty.db")}` }), 3, /holds no CLAIIM data that can be read/);
  });
});
