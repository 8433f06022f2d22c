import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { decisionRecords, registerDeployBot, type TestAgent } from "../support/agents";
import { until } from "../support/until";
import { sql } from "../support/sql";
import { nodeEnv } from "../support/process";
import { FakeIdp } from "../support/fake-idp";

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, "../..");
// scripts/test.sh makes this venv (bash scripts/python-env.sh) and names it here.
const PYTHON = process.env.CLAIIM_TEST_PYTHON ?? path.join(ROOT, ".tools/venv/bin/python");

/**
 * The examples run as the README and docs/sdk.md paste them, from the project folder, against a real CLAIIM:
 * staging is allowed; production waits for a human's approval, which Alice gives (through a chat
 * bridge's approver key) while the example waits, and then it is allowed once.
 */
describe.each(databaseKinds())("the examples, against CLAIIM on %s", (kind) => {
  let s: TestServer;
  let bot: TestAgent;
  let env: NodeJS.ProcessEnv;
  let bridge: string;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });

  beforeAll(async () => {
    s = await startTestServer(kind);
    bot = await registerDeployBot(s);
    env = { PATH: process.env.PATH, HOME: process.env.HOME, CLAIIM_URL: s.claiim.url, CLAIIM_CLIENT_ID: bot.clientId, CLAIIM_CLIENT_SECRET: bot.clientSecret };
    bridge = (await s.http.post("/v1/api-keys").set(admin()).send({ name: "chat bridge", role: "approver", organization: bot.orgSlug }).expect(201)).body.secret;
  });
  afterAll(async () => {
    await s?.stop();
  });

  /** Runs an example while Alice approves the production deploy it asks for; returns its output and the approval's id. */
  async function runApproved(command: string, args: string[]): Promise<{ stdout: string; approvalId: string }> {
    const running = run(command, args, { cwd: ROOT, env });
    const approvalId = await until(
      "the example to ask for an approval",
      async () => {
        const list = (await s.http.get(`/v1/approvals?agent=${bot.agentId}&status=pending`).set(admin()).expect(200)).body.approvals as { id: string; request: { resource: string } }[];
        return list.find((a) => a.request.resource === "production")?.id;
      },
      45_000,
    );
    await s.http.post(`/v1/approvals/${approvalId}/approve`).set({ Authorization: `Bearer ${bridge}` }).send({ reason: "release 1.4.0 reviewed", on_behalf_of: `alice@${bot.orgSlug}.example` }).expect(200);
    return { stdout: (await running).stdout, approvalId };
  }

  /** Checks the story: staging allowed; production asked for an approval, then allowed once with it, as Chron shows. */
  async function expectStory(stdout: string, approvalId: string, allowed: RegExp, waiting: RegExp, approved: RegExp): Promise<void> {
    const lines = stdout.trim().split("\n");
    expect(lines.find((l) => l.startsWith("staging:"))).toMatch(allowed);
    const production = lines.filter((l) => l.startsWith("production:"));
    expect(production.find((l) => waiting.test(l))).toBeDefined();
    expect(production[production.length - 1]).toMatch(approved);
    const trail = (await decisionRecords(s, bot.agentId)).filter((r) => (r.approval as { id?: string } | undefined)?.id === approvalId);
    expect(trail.map((r) => [r.decision, r.resource])).toEqual([
      ["approval_required", "production"],
      ["allow", "production"],
    ]);
  }

  test("TypeScript: npx tsx examples/typescript/deploy-agent.ts", async () => {
    const { stdout, approvalId } = await runApproved("npx", ["tsx", "examples/typescript/deploy-agent.ts"]);
    await expectStory(
      stdout,
      approvalId,
      /^staging: allowed: checkout 1\.4\.0 is live on staging$/,
      new RegExp(`^production: waiting for alice@${bot.orgSlug}\\.example to approve ${approvalId}$`),
      new RegExp(`^production: allowed: checkout 1\\.4\\.0 is live on production \\(approval ${approvalId}\\)$`),
    );
  });

  test("Python: .tools/venv/bin/python examples/python/deploy_agent.py", async () => {
    if (!fs.existsSync(PYTHON)) throw new Error(`no Python venv at ${PYTHON}: run bash scripts/python-env.sh (make test does)`);
    const { stdout, approvalId } = await runApproved(PYTHON, ["examples/python/deploy_agent.py"]);
    await expectStory(stdout, approvalId, /^staging: allowed: checkout 1\.4\.0 is live on staging$/, /^production: asking; a human may have to approve it/, /^production: allowed: checkout 1\.4\.0 is live on production$/);
  });

  test("MCP: node examples/mcp/client.mjs, through claiim mcp-gateway to deploy-server.mjs", async () => {
    const { stdout, approvalId } = await runApproved("node", ["examples/mcp/client.mjs"]);
    expect(stdout).toContain("tools the agent may call: deploy_service\n");
    await expectStory(
      stdout,
      approvalId,
      /^staging: done: deployed checkout 1\.4\.0 to staging$/,
      new RegExp(`^production: waiting for approval ${approvalId} from Alice Ops <alice@${bot.orgSlug}\\.example>`),
      /^production: done: deployed checkout 1\.4\.0 to production$/,
    );
  });
});

/**
 * Every shell command block of README.md and docs/*.md is either run below, as pasted, or marked
 * as not runnable here. The convention:
 *
 * - A block is a fence opened with ```bash, ```sh, ```shell or ```console.
 * - A block that cannot run here has, on the line right before its fence, the comment
 *   `<!-- not run: <kind>: <reason> -->`, where <kind> is one of NOT_RUN's and the block must show
 *   what that kind says (a docker block runs docker, a placeholder block holds a `…` to fill in,
 *   …), and <reason> says why in words. Nothing else stops a block from running.
 * - Every other block is named in SESSION, in the order a newcomer would paste it, by its page, the
 *   heading it is under and a piece of its text; each must name exactly one block, and each block
 *   exactly one entry.
 *
 * The blocks of SESSION are pasted, as written, one after the other into one bash session (bash -e)
 * in a copy of the project folder (links to its code; data/ and bundles/ are those of the CLAIIM
 * the test started), against a real CLAIIM on SQLite that has an identity provider (FakeIdp; the
 * session's ALICE_OIDC_TOKEN is Alice's token from it) and the redaction rules docs/chron.md gives.
 * The one change made to the text: the pages' address, http://127.0.0.1:8080, becomes the test
 * CLAIIM's (tests use no fixed port); PORT says the same to `make publish-policy`, as `make run`'s
 * PORT would. While the examples wait for Alice, the test approves for her, through an approver key,
 * every pending approval but the walkthrough's (which the walkthrough approves itself).
 */
const PAGES = ["README.md", ...fs.readdirSync(path.join(ROOT, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)];

/** What a block marked `not run` must show, per kind. */
const NOT_RUN: Record<string, { shows: string; holds: (commands: string[]) => boolean }> = {
  // This suite itself, and the server the blocks below run against.
  "make-suite": { shows: "only make run and make test", holds: (c) => c.length > 0 && c.every((l) => /^make (run|test)\b/.test(l)) },
  // No Docker engine on the machines the tests run on.
  docker: { shows: "only docker commands", holds: (c) => c.length > 0 && c.every((l) => /^docker\b/.test(l)) },
  // Values the reader fills in (a client id, another CLAIIM's key), written as `…`.
  placeholder: { shows: "a … to fill in", holds: (c) => c.some((l) => l.includes("…")) },
};

interface Block {
  page: string;
  line: number;
  heading: string;
  text: string;
  /** The `not run` comment before the fence, if any. */
  mark: { kind: string; reason: string } | null;
  /** Its lines that are commands, not comments or continuations. */
  commands: string[];
}

/** The shell command blocks of a page, as written, with the heading each is under. */
function shellBlocks(page: string): Block[] {
  const blocks: Block[] = [];
  const lines = fs.readFileSync(path.join(ROOT, page), "utf8").split("\n");
  let heading = "";
  for (let i = 0; i < lines.length; i++) {
    const fence = /^(```+)(\S*)/.exec(lines[i]);
    if (!fence) {
      if (lines[i].startsWith("#")) heading = lines[i].replace(/^#+\s*/, "");
      continue;
    }
    const end = lines.findIndex((l, j) => j > i && l.startsWith(fence[1]) && l.trim() === fence[1]);
    if (end < 0) throw new Error(`${page}:${i + 1}: a fence that never closes`);
    if (["bash", "sh", "shell", "console"].includes(fence[2])) {
      const body = lines.slice(i + 1, end);
      const m = /^<!-- not run: ([a-z-]+): (.+?) -->$/.exec(lines[i - 1] ?? "");
      if (!m && /not run/.test(lines[i - 1] ?? "")) throw new Error(`${page}:${i}: a "not run" comment not in the form <!-- not run: <kind>: <reason> -->`);
      const commands = body.filter((l, j) => l.trim() !== "" && !l.trimStart().startsWith("#") && !(j > 0 && body[j - 1].endsWith("\\"))).map((l) => l.trim());
      blocks.push({ page, line: i + 1, heading, text: body.join("\n") + "\n", mark: m ? { kind: m[1], reason: m[2] } : null, commands });
    }
    i = end;
  }
  return blocks;
}

/** The blocks pasted, in order: page, heading, a piece of the block's text. */
const SESSION: [page: string, heading: string, has: string][] = [
  ["README.md", "Walkthrough: the deployment agent", "export CLAIIM="],
  ["docs/identity.md", "Who may call what", "An auditor key for Acme only"],
  ["docs/identity.md", "Lifecycle", "/suspend"],
  ["docs/identity.md", "Agent credentials", "grant_type=client_credentials"],
  ["docs/approvals.md", "Reaching the human", "ALICE_OIDC_TOKEN"],
  ["docs/sdk.md", "Waiting for a human's approval", "examples/typescript/deploy-agent.ts"],
  ["docs/policy.md", "Changing policy safely", "make publish-policy"],
  ["docs/policy.md", "Signed bundles", "opa build -b bundles/2.tar.gz"],
  ["docs/policy.md", "Shadow mode", "SHADOW=1"],
  ["docs/policy.md", "Replay", "/replay"],
  ["docs/operations.md", "`claiim`, the operator's command", "bin/claiim status"],
  ["docs/chron.md", "Offline verification", "npx claiim-verify chron.ndjson"],
  ["docs/chron.md", "Retention", "/v1/chron/retention"],
];

const ALL = PAGES.flatMap(shellBlocks);
const sessionBlocks = SESSION.map(([page, heading, has]) => ALL.filter((b) => b.page === page && b.heading === heading && b.text.includes(has)));

describe("the command blocks of README.md and docs/", () => {
  test("each is run below as pasted, or marked not runnable with a reason its kind allows", () => {
    expect(ALL.length).toBeGreaterThan(10);
    const problems: string[] = [];
    SESSION.forEach(([page, heading, has], i) => {
      if (sessionBlocks[i].length !== 1) problems.push(`SESSION names ${sessionBlocks[i].length} blocks in ${page} under "${heading}" with ${has}`);
    });
    const run = new Set(sessionBlocks.flat());
    for (const b of ALL) {
      const where = `${b.page}:${b.line}`;
      if (b.mark) {
        const kind = NOT_RUN[b.mark.kind];
        if (!kind) problems.push(`${where}: no such kind of not run: ${b.mark.kind} (${Object.keys(NOT_RUN).join(", ")})`);
        else if (!kind.holds(b.commands)) problems.push(`${where}: marked ${b.mark.kind}, but the block does not show ${kind.shows}`);
        if (b.mark.reason.trim().length < 20) problems.push(`${where}: say why it cannot run here`);
        if (run.has(b)) problems.push(`${where}: marked not run, yet SESSION runs it`);
      } else if (!run.has(b)) problems.push(`${where}: neither run by SESSION nor marked <!-- not run: <kind>: <reason> --> (under "${b.heading}")`);
    }
    expect(problems).toEqual([]);
  });
});

describe("the pasted session", () => {
  let s: TestServer;
  let folder: string;
  let env: NodeJS.ProcessEnv;
  const idp = new FakeIdp();
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });

  beforeAll(async () => {
    // The redaction example of docs/chron.md, as written there (two rules in backticks).
    const chron = fs.readFileSync(path.join(ROOT, "docs/chron.md"), "utf8");
    const redaction = /as OPA's decision-log masking has them: `(\{[^`]+\})` or\n`(\{[^`]+\})`/.exec(chron);
    if (!redaction) throw new Error("docs/chron.md's redaction example moved: update this test");
    await idp.start();
    s = await startTestServer(databaseKinds()[0], { env: { ...idp.env(), CLAIIM_REDACTION_RULES: JSON.stringify([JSON.parse(redaction[1]), JSON.parse(redaction[2].replace(/\n/g, " "))]) } });
    folder = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "pasted-"));
    for (const entry of ["Makefile", "scripts", "bin", "dist", "node_modules", "package.json", "rego", ".tools", "src", "examples", "sdk"]) fs.symlinkSync(path.join(ROOT, entry), path.join(folder, entry));
    // The server's own data/ (the bootstrap credential, the witness log, retention's archives) and bundles/.
    fs.symlinkSync(s.config.dataDir, path.join(folder, "data"));
    fs.symlinkSync(s.config.bundleDir, path.join(folder, "bundles"));
    const alice = await idp.sign({ name: "Alice Ops", email: "alice@acme.example", email_verified: true, claiim_org: "acme", claiim_roles: [] }, { sub: "00u-alice" });
    env = { PATH: process.env.PATH, HOME: process.env.HOME, PORT: new URL(s.claiim.url).port, ALICE_OIDC_TOKEN: alice, ...nodeEnv() };
  });
  afterAll(async () => {
    await s?.stop();
    await idp.stop();
  });

  /** Approves, for Alice, every pending approval of Acme but the first ever asked (the walkthrough's), until stopped. */
  function approveForAlice(): () => Promise<void> {
    let running = true;
    let key: string | null = null;
    const loop = (async () => {
      while (running) {
        const list = ((await s.http.get("/v1/approvals?organization=acme").set(admin())).body.approvals ?? []) as { id: string; status: string; created_at: string }[];
        const later = list.sort((a, b) => a.created_at.localeCompare(b.created_at)).slice(1);
        for (const a of later.filter((x) => x.status === "pending")) {
          key ??= (await s.http.post("/v1/api-keys").set(admin()).send({ name: "examples' bridge", role: "approver", organization: "acme" }).expect(201)).body.secret;
          await s.http.post(`/v1/approvals/${a.id}/approve`).set({ Authorization: `Bearer ${key}` }).send({ reason: "the examples' production deploy", on_behalf_of: "alice@acme.example" });
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    return async () => {
      running = false;
      await loop;
    };
  }

  test("runs every block SESSION names, and each does what its page says", async () => {
    const text = sessionBlocks.map((b) => b[0].text).join("\n").replaceAll("http://127.0.0.1:8080", s.claiim.url);
    const started = Date.now() - 1000;
    const stopApproving = approveForAlice();
    let out: { stdout: string; stderr: string };
    try {
      out = await run("bash", ["-e", "-c", text], { cwd: folder, env, timeout: 540_000, maxBuffer: 64 * 1024 * 1024 });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`the session failed: ${e.message}\n--- stdout (end)\n${(e.stdout ?? "").slice(-4000)}\n--- stderr (end)\n${(e.stderr ?? "").slice(-4000)}`);
    } finally {
      await stopApproving();
    }
    const { stdout, stderr } = out;
    expect(stderr).not.toMatch(/command not found|No such file|error/i);

    // The walkthrough: the trail the README shows, line for line.
    const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
    const trail = /from record \d+ on[^\n]*\n[^\n]*\n\n```\n([\s\S]*?)```/.exec(readme)![1].trim().split("\n");
    for (const line of trail) expect(stdout).toContain(line);
    expect(stdout).toMatch(/"decision": "approval_required"/);
    expect(stdout).toMatch(/"status": "approved"/);
    // Agent identity: the auditor key, the inventory as CSV, the suspension and the reactivation, a decision with an access token.
    expect(stdout).toMatch(/"role": "auditor"/);
    expect(stdout).toMatch(/^.*deploy-bot.*alice@acme\.example.*$/m);
    expect(stdout).toMatch(/^"suspended"\n"active"$/m);
    expect(stdout).toMatch(/^"allow"$/m);
    // The examples: each deployed to production once Alice had approved.
    expect(stdout).toMatch(/^production: allowed: checkout 1\.4\.0 is live on production \(approval [0-9a-f-]+\)$/m);
    expect(stdout).toMatch(/^production: done: deployed checkout 1\.4\.0 to production$/m);
    // The policy change: version 2 published, activated, rolled back; version 3 shadowed, then replayed.
    expect(stdout).toMatch(/^published version 2 \(2-sha256:[0-9a-f]{64}\); parent 1$/m);
    expect(stdout).toMatch(/^published version 3 \(3-sha256:[0-9a-f]{64}\)/m);
    expect((await s.http.get("/v1/policies/status").set(admin()).expect(200)).body.active_version).toBe(1);
    // The bundle check: OPA itself verified the stored bundle's signature and wrote the checked copy.
    expect(fs.statSync("/tmp/checked.tar.gz").mtimeMs).toBeGreaterThan(started);
    // The operator's command, the offline verifier, retention.
    expect(stdout).toMatch(/^CLAIIM at http:\/\/127\.0\.0\.1:\d+: ready$/m);
    expect(stdout).toMatch(/^OK: /m);
    expect(stdout).toMatch(/"sha256": "[0-9a-f]{64}"/);
    expect(stdout.trim().split("\n").pop()).toBe("true");

    // The redaction rules: the purpose is nowhere in clear in the decision records, those retention
    // archived (the session's last block) and those left.
    const archives = fs.readdirSync(path.join(s.config.dataDir, "archives")).map((f) => fs.readFileSync(path.join(s.config.dataDir, "archives", f), "utf8"));
    const records = [
      ...archives.flatMap((a) => a.split("\n").filter((l) => l.includes('"kind":"decision"'))),
      ...(await sql(s.claiim.db, "SELECT content FROM chron_records WHERE kind = 'decision'")).map((r) => String(r.content)),
    ];
    expect(records.length).toBeGreaterThan(10);
    for (const r of records) expect(r).not.toMatch(/release 1\.4\.0/);
  }, 600_000);
});
