import { execFile, execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { decisionRecords, registerDeployBot, type TestAgent } from "../support/agents";
import { until } from "../support/until";
import { sql } from "../support/sql";

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, "../..");
// scripts/test.sh makes this venv (bash scripts/python-env.sh) and names it here.
const PYTHON = process.env.CLAIIM_TEST_PYTHON ?? path.join(ROOT, ".tools/venv/bin/python");

/**
 * The examples run as the README pastes them, from the project folder, against a real CLAIIM:
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

/** The ```bash blocks of a Markdown file, as written, with the heading each is under. */
function bashBlocks(file: string): { heading: string; text: string }[] {
  const blocks: { heading: string; text: string }[] = [];
  let heading = "";
  let open: string[] | null = null;
  for (const line of fs.readFileSync(path.join(ROOT, file), "utf8").split("\n")) {
    if (open) {
      if (line === "```") {
        blocks.push({ heading, text: open.join("\n") + "\n" });
        open = null;
      } else open.push(line);
    } else if (line === "```bash") open = [];
    else if (line.startsWith("#")) heading = line.replace(/^#+\s*/, "");
  }
  return blocks;
}

/**
 * The README's command blocks, pasted into one shell session in the project folder as a newcomer
 * would, against a freshly started CLAIIM: the walkthrough, the policy change, the bundle check
 * with the OPA CLI, and the redaction rules it gives. The folder is a copy of the project's layout
 * (links to its code, its own data/ and bundles/); CLAIIM listens on a port of its own, so `curl`
 * reaches it through a shim that reads the README's http://127.0.0.1:8080 as that port.
 */
describe("the README's blocks, run as pasted", () => {
  let s: TestServer;
  let folder: string;
  let env: NodeJS.ProcessEnv;
  const blocks = bashBlocks("README.md");
  const block = (heading: string, has: string) => {
    const b = blocks.find((x) => x.heading === heading && x.text.includes(has));
    if (!b) throw new Error(`the README has no bash block under "${heading}" with ${has}`);
    return b.text;
  };
  /** Runs blocks one after the other in one bash session; fails on the first failing command of a pipeline's end. */
  const paste = (...texts: string[]) => run("bash", ["-e", "-c", texts.join("\n")], { cwd: folder, env, timeout: 120_000 });

  beforeAll(async () => {
    // The README's redaction example, as written there (two rules in backticks).
    const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
    const redaction = /as OPA's decision-log masking has them: `(\{[^`]+\})` or\n`(\{[^`]+\})`/.exec(readme);
    if (!redaction) throw new Error("the README's redaction example moved: update this test");
    s = await startTestServer(databaseKinds()[0], { env: { CLAIIM_REDACTION_RULES: JSON.stringify([JSON.parse(redaction[1]), JSON.parse(redaction[2].replace(/\n/g, " "))]) } });
    folder = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "pasted-"));
    for (const entry of ["Makefile", "scripts", "bin", "dist", "node_modules", "package.json", "rego", ".tools", "src"]) fs.symlinkSync(path.join(ROOT, entry), path.join(folder, entry));
    fs.mkdirSync(path.join(folder, "data"));
    fs.copyFileSync(s.claiim.bootstrapCredentialFile!, path.join(folder, "data", "bootstrap-admin.token"));
    fs.symlinkSync(s.config.bundleDir, path.join(folder, "bundles"));
    const shims = path.join(folder, ".shims");
    fs.mkdirSync(shims);
    const curl = execFileSync("bash", ["-c", "command -v curl"], { encoding: "utf8" }).trim();
    fs.writeFileSync(path.join(shims, "curl"), `#!/usr/bin/env bash\nargs=()\nfor a in "$@"; do args+=("\${a//http:\\/\\/127.0.0.1:8080/${s.claiim.url.replace(/\//g, "\\/")}}"); done\nexec ${curl} "\${args[@]}"\n`, { mode: 0o755 });
    // PORT: where `make publish-policy` (the claiim command) finds CLAIIM, as it would find `make run`'s.
    env = { PATH: `${shims}:${process.env.PATH}`, HOME: process.env.HOME, PORT: new URL(s.claiim.url).port };
  });
  afterAll(() => s?.stop());

  test("the walkthrough, the policy change and the bundle check print what the README says they print", async () => {
    const walkthrough = block("Walkthrough: the deployment agent", "export CLAIIM=");
    const policy = block("Changing policy safely", "make publish-policy");
    const bundle = block("Changing policy safely", "opa build -b bundles/2.tar.gz");
    const started = Date.now() - 1000;
    const { stdout, stderr } = await paste(walkthrough, policy, bundle);
    expect(stderr).not.toMatch(/command not found|No such file|error/i);

    // The trail the README shows, line for line.
    const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
    const trail = /from record \d+ on[^\n]*\n[^\n]*\n\n```\n([\s\S]*?)```/.exec(readme)![1].trim().split("\n");
    for (const line of trail) expect(stdout).toContain(line);
    expect(stdout).toMatch(/"decision": "approval_required"/);
    expect(stdout).toMatch(/"status": "approved"/);
    expect(stdout).toMatch(/"valid": true/);
    // The policy change: version 2 published, activated, rolled back.
    expect(stdout).toMatch(/^published version 2 \(2-sha256:[0-9a-f]{64}\); parent 1$/m);
    expect((await s.http.get("/v1/policies/status").set({ Authorization: `Bearer ${s.admin}` }).expect(200)).body.active_version).toBe(1);
    // The bundle check: OPA itself verified the stored bundle's signature and wrote the checked copy.
    expect(fs.statSync("/tmp/checked.tar.gz").mtimeMs).toBeGreaterThan(started);

    // The redaction rules: the purpose and the customer are nowhere in clear in the decision records.
    const records = await sql(s.claiim.db, "SELECT content FROM chron_records WHERE kind = 'decision'");
    expect(records.length).toBeGreaterThan(0);
    for (const r of records) expect(r.content).not.toMatch(/release 1\.4\.0/);
  });
});
