import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { decisionRecords, registerDeployBot, type TestAgent } from "../support/agents";

const ROOT = path.resolve(__dirname, "../..");
const CLAIIM_BIN = path.join(ROOT, "bin/claiim");

type ToolResult = { isError?: boolean; content: { type: string; text: string }[]; _meta?: Record<string, { decision_id: string; decision: string; reasons: { message: string }[] }> };
const text = (r: ToolResult) => r.content.map((c) => c.text).join(" ");

/** An upstream MCP server in this test, over Streamable HTTP, that counts the calls reaching it. */
async function countingUpstream(): Promise<{ url: string; calls: Record<string, number>; reads: Record<string, number>; close(): Promise<void> }> {
  const calls: Record<string, number> = {};
  const reads: Record<string, number> = {};
  const build = () => {
    const server = new McpServer({ name: "counting-upstream", version: "1.0.0" });
    for (const name of ["deploy_service", "drop_database", "hotfix_production"]) {
      server.registerTool(name, { description: name, inputSchema: { environment: z.string().optional(), service: z.string().optional() } }, async (args) => {
        calls[name] = (calls[name] ?? 0) + 1;
        return { content: [{ type: "text", text: `${name} ran with ${JSON.stringify(args)}` }] };
      });
    }
    for (const uri of ["notes://readme", "reports://q3"]) {
      server.registerResource(uri, uri, { mimeType: "text/plain" }, async (u) => {
        reads[uri] = (reads[uri] ?? 0) + 1;
        return { contents: [{ uri: u.href, text: `contents of ${uri}` }] };
      });
    }
    return server;
  };
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const http: HttpServer = createServer(async (req, res) => {
    const sid = req.headers["mcp-session-id"] as string | undefined;
    let transport = sid ? sessions.get(sid) : undefined;
    if (!transport) {
      const t = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), onsessioninitialized: (id) => void sessions.set(id, t) });
      await build().connect(t);
      transport = t;
    }
    await transport.handleRequest(req, res);
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`,
    calls,
    reads,
    close: async () => {
      await Promise.allSettled([...sessions.values()].map((t) => t.close()));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

/** Starts `claiim mcp-gateway --http 127.0.0.1:0` and waits for the URL it logs. */
async function httpGateway(config: string, env: Record<string, string>): Promise<{ url: string; child: ChildProcess; stderr: () => string }> {
  const child = spawn(process.execPath, [CLAIIM_BIN, "mcp-gateway", "--config", config, "--http", "127.0.0.1:0"], { env: { ...getDefaultEnvironment(), ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start: ${stderr}`)), 20_000);
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      const m = /"message":"MCP gateway listening".*?"url":"([^"]+)"/.exec(stderr) ?? /"url":"([^"]+)".*?"message":"MCP gateway listening"/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once("exit", (code) => reject(new Error(`gateway exited ${code}: ${stderr}`)));
  });
  return { url, child, stderr: () => stderr };
}

describe.each(databaseKinds())("the MCP gateway with a real MCP client and real upstream servers, CLAIIM on %s", (kind) => {
  let s: TestServer;
  let bot: TestAgent;
  let dir: string;
  let env: Record<string, string>;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });

  beforeAll(async () => {
    s = await startTestServer(kind);
    bot = await registerDeployBot(s);
    dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "mcp-"));
    env = { CLAIIM_URL: s.claiim.url, CLAIIM_CLIENT_ID: bot.clientId, CLAIIM_CLIENT_SECRET: bot.clientSecret };
  });
  afterAll(async () => {
    await s?.stop();
  });

  describe("stdio client → gateway → stdio upstream (examples/mcp/deploy-server.mjs)", () => {
    let client: Client;
    let log: string;
    const upstreamCalls = () => (fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)) : []);

    beforeAll(async () => {
      log = path.join(dir, "deploy-server.log");
      const config = path.join(dir, "stdio.json");
      fs.writeFileSync(
        config,
        JSON.stringify({
          purpose: "deployment through MCP",
          upstreams: { deployer: { command: process.execPath, args: [path.join(ROOT, "examples/mcp/deploy-server.mjs")], env: { DEPLOY_SERVER_LOG: log } } },
          tools: { deploy_service: { action: "deploy", skill: "deploy", resource: { from: "arguments.environment" } } },
        }),
      );
      client = new Client({ name: "test-host", version: "1.0.0" });
      await client.connect(new StdioClientTransport({ command: process.execPath, args: [CLAIIM_BIN, "mcp-gateway", "--config", config, "--log-level", "warn"], env: { ...getDefaultEnvironment(), ...env }, stderr: "pipe" }));
    });
    afterAll(async () => {
      await client?.close();
    });

    test("tools/list shows only the tools the configuration names and the agent may call", async () => {
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name)).toEqual(["deploy_service"]);
    });

    test("an allowed call reaches the upstream and is recorded, with the purpose from the request's metadata", async () => {
      const result = (await client.callTool({ name: "deploy_service", arguments: { service: "checkout", environment: "staging" }, _meta: { "io.claiim/purpose": "release 1.4.0" } })) as ToolResult;
      expect(result.isError).toBeFalsy();
      expect(text(result)).toBe("deployed checkout to staging");
      expect(upstreamCalls()).toEqual([{ tool: "deploy_service", args: { service: "checkout", environment: "staging" } }]);
      const decisionId = result._meta!["io.claiim/decision"].decision_id;
      const record = (await decisionRecords(s, bot.agentId)).find((r) => r.decision_id === decisionId);
      expect(record).toMatchObject({ decision: "allow", action: "deploy", resource: "staging", purpose: "release 1.4.0", skill: { name: "deploy", version: "1.2.0" }, requested_by: { credential_id: bot.clientId } });
    });

    test("a denied call never reaches the upstream and returns the reasons and the decision_id", async () => {
      const result = (await client.callTool({ name: "deploy_service", arguments: { service: "checkout", environment: "production" } })) as ToolResult;
      expect(result.isError).toBe(true);
      expect(text(result)).toContain("deploying to production requires a change approved by a human");
      const meta = result._meta!["io.claiim/decision"];
      expect(text(result)).toContain(meta.decision_id);
      expect(meta).toMatchObject({ decision: "deny", reasons: [{ message: "deploying to production requires a change approved by a human" }] });
      expect(upstreamCalls()).toHaveLength(1);
      const record = (await decisionRecords(s, bot.agentId)).find((r) => r.decision_id === meta.decision_id);
      expect(record).toMatchObject({ decision: "deny", resource: "production", purpose: "deployment through MCP" });
    });

    test("unknown tools, and calls whose resource is missing, are refused before anything is asked or run", async () => {
      const before = (await decisionRecords(s, bot.agentId)).length;
      const unknown = (await client.callTool({ name: "drop_database", arguments: { name: "prod" } })) as ToolResult;
      expect(unknown.isError).toBe(true);
      expect(text(unknown)).toMatch(/not in the gateway's configuration/);
      const noResource = (await client.callTool({ name: "deploy_service", arguments: { service: "checkout", environment: ["staging"] } })) as ToolResult;
      expect(noResource.isError).toBe(true);
      expect(upstreamCalls()).toHaveLength(1);
      expect((await decisionRecords(s, bot.agentId)).length).toBe(before);
    });

    test("unmapped prompts and resources pass through", async () => {
      const prompt = await client.getPrompt({ name: "release_notes", arguments: { service: "checkout" } });
      expect(prompt.messages[0].content).toMatchObject({ text: "Draft release notes for checkout." });
      const history = await client.readResource({ uri: "deployments://history" });
      expect(JSON.parse((history.contents[0] as { text: string }).text)).toEqual([expect.objectContaining({ service: "checkout", environment: "staging" })]);
    });
  });

  describe("Streamable HTTP client → gateway → Streamable HTTP upstream", () => {
    let upstream: Awaited<ReturnType<typeof countingUpstream>>;
    let gateway: Awaited<ReturnType<typeof httpGateway>>;
    let client: Client;
    const TOKEN = `gw-${randomUUID()}`;

    beforeAll(async () => {
      upstream = await countingUpstream();
      const config = path.join(dir, "http.json");
      fs.writeFileSync(
        config,
        JSON.stringify({
          upstreams: { counting: { url: upstream.url } },
          tools: {
            deploy_service: { action: "deploy", resource: { from: "arguments.environment" } },
            hotfix_production: { action: "deploy", skill: "deploy", resource: "production" },
          },
          resources: [{ uri: "reports://*", action: "read_report", skill: "deploy", resource: { from: "uri" } }],
          permissions_cache_seconds: 0,
        }),
      );
      gateway = await httpGateway(config, { ...env, CLAIIM_GATEWAY_TOKEN: TOKEN });
      client = new Client({ name: "test-host", version: "1.0.0" });
      await client.connect(new StreamableHTTPClientTransport(new URL(gateway.url), { requestInit: { headers: { Authorization: `Bearer ${TOKEN}` } } }));
    });
    afterAll(async () => {
      await client?.close();
      gateway?.child.kill("SIGTERM");
      await upstream?.close();
    });

    test("without the gateway's token, nobody gets in", async () => {
      const res = await fetch(gateway.url, { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream" }, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: {} }) });
      expect(res.status).toBe(401);
    });

    test("tools/list is filtered: unknown tools and a tool on a resource the agent may not touch are hidden", async () => {
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name).sort()).toEqual(["deploy_service"]);
      const { resources } = await client.listResources();
      expect(resources.map((r) => r.uri)).toEqual(["notes://readme"]);
    });

    test("an allowed call is counted upstream; a denied one and an unknown one are not", async () => {
      const ok = (await client.callTool({ name: "deploy_service", arguments: { environment: "staging", service: "api" } })) as ToolResult;
      expect(ok.isError).toBeFalsy();
      expect(upstream.calls.deploy_service).toBe(1);
      const denied = (await client.callTool({ name: "hotfix_production", arguments: {} })) as ToolResult;
      expect(denied.isError).toBe(true);
      expect(denied._meta!["io.claiim/decision"]).toMatchObject({ decision: "deny", reasons: [{ message: "deploying to production requires a change approved by a human" }] });
      expect(upstream.calls.hotfix_production).toBeUndefined();
      expect(((await client.callTool({ name: "drop_database", arguments: {} })) as ToolResult).isError).toBe(true);
      expect(upstream.calls.drop_database).toBeUndefined();
    });

    test("a resource mapped to an action is a decision: refused with the reasons, never read; unmapped ones pass", async () => {
      const err = await client.readResource({ uri: "reports://q3" }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: -32003, data: { decision: "deny", decision_id: expect.any(String) } });
      expect(upstream.reads["reports://q3"]).toBeUndefined();
      const record = (await decisionRecords(s, bot.agentId)).find((r) => r.decision_id === (err as { data: { decision_id: string } }).data.decision_id);
      expect(record).toMatchObject({ action: "read_report", resource: "reports://q3", decision: "deny" });
      await client.readResource({ uri: "notes://readme" });
      expect(upstream.reads["notes://readme"]).toBe(1);
    });

    test("a suspended agent's next call is denied (and recorded), and its tool list is empty", async () => {
      await s.http.post(`/v1/agents/${bot.agentId}/suspend`).set(admin()).send({ reason: "incident 42" }).expect(200);
      const before = upstream.calls.deploy_service;
      const result = (await client.callTool({ name: "deploy_service", arguments: { environment: "staging" } })) as ToolResult;
      expect(result.isError).toBe(true);
      expect(text(result)).toContain('agent "deploy-bot" is suspended, not active');
      expect(upstream.calls.deploy_service).toBe(before);
      const record = (await decisionRecords(s, bot.agentId)).find((r) => r.decision_id === result._meta!["io.claiim/decision"].decision_id);
      expect(record).toMatchObject({ decision: "deny", agent: { status: "suspended" } });
      expect((await client.listTools()).tools).toEqual([]);
    });
  });
});
