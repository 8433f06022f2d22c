import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { decisionRecords, registerDeployBot, type TestAgent } from "../support/agents";
import { until } from "../support/until";

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
