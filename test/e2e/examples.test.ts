import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { decisionRecords, registerDeployBot, type TestAgent } from "../support/agents";

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, "../..");
// scripts/test.sh makes this venv (bash scripts/python-env.sh) and names it here.
const PYTHON = process.env.CLAIIM_TEST_PYTHON ?? path.join(ROOT, ".tools/venv/bin/python");
const PRODUCTION_REASON = "deploying to production requires a change approved by a human";

/** The examples run as the README pastes them, from the project folder, against a real CLAIIM. */
describe.each(databaseKinds())("the examples, against CLAIIM on %s", (kind) => {
  let s: TestServer;
  let bot: TestAgent;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    s = await startTestServer(kind);
    bot = await registerDeployBot(s);
    env = { PATH: process.env.PATH, HOME: process.env.HOME, CLAIIM_URL: s.claiim.url, CLAIIM_CLIENT_ID: bot.clientId, CLAIIM_CLIENT_SECRET: bot.clientSecret };
  });
  afterAll(async () => {
    await s?.stop();
  });

  /** Checks an example's two lines: staging allowed, production denied with the reason and a decision id that Chron holds as a deny. */
  async function expectStory(stdout: string, allowed: RegExp, denied: RegExp): Promise<void> {
    const lines = stdout.trim().split("\n");
    expect(lines.find((l) => l.startsWith("staging:"))).toMatch(allowed);
    const deny = lines.find((l) => l.startsWith("production:"))!;
    expect(deny).toMatch(denied);
    expect(deny).toContain(PRODUCTION_REASON);
    const decisionId = /([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/.exec(deny)![1];
    expect((await decisionRecords(s, bot.agentId)).find((r) => r.decision_id === decisionId)).toMatchObject({ decision: "deny", resource: "production" });
  }

  test("TypeScript: npx tsx examples/typescript/deploy-agent.ts", async () => {
    const { stdout } = await run("npx", ["tsx", "examples/typescript/deploy-agent.ts"], { cwd: ROOT, env });
    await expectStory(stdout, /^staging: allowed: checkout 1\.4\.0 is live on staging$/, /^production: denied: /);
  });

  test("Python: .tools/venv/bin/python examples/python/deploy_agent.py", async () => {
    if (!fs.existsSync(PYTHON)) throw new Error(`no Python venv at ${PYTHON}: run bash scripts/python-env.sh (make test does)`);
    const { stdout } = await run(PYTHON, ["examples/python/deploy_agent.py"], { cwd: ROOT, env });
    await expectStory(stdout, /^staging: allowed: checkout 1\.4\.0 is live on staging$/, /^production: denied: /);
  });

  test("MCP: node examples/mcp/client.mjs, through claiim mcp-gateway to deploy-server.mjs", async () => {
    const { stdout } = await run("node", ["examples/mcp/client.mjs"], { cwd: ROOT, env });
    expect(stdout).toContain("tools the agent may call: deploy_service\n");
    await expectStory(stdout, /^staging: done: deployed checkout 1\.4\.0 to staging$/, /^production: refused: CLAIIM did not allow tool "deploy_service"/);
  });
});
