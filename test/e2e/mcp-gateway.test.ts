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
import { sql } from "../support/sql";
import { until } from "../support/until";

const ROOT = path.resolve(__dirname, "../..");
const CLAIIM_BIN = path.join(ROOT, "bin/claiim");

type DecisionMeta = { decision_id: string; decision: string; reasons: { message: string; code?: string }[]; approval?: { id: string; status: string; url: string; expires_at: string; approvers?: unknown } };
type ToolResult = { isError?: boolean; content: { type: string; text: string }[]; _meta?: Record<string, DecisionMeta> };
const MAINFRAME_REASON = 'no rule permits action "deploy" on resource "mainframe" under skill "deploy"';
const text = (r: ToolResult) => r.content.map((c) => c.text).join(" ");

/** An upstream MCP server in this test, over Streamable HTTP, that counts the calls reaching it. */
async function countingUpstream(): Promise<{ url: string; calls: Record<string, number>; reads: Record<string, number>; close(): Promise<void> }> {
  const calls: Record<string, number> = {};
  const reads: Record<string, number> = {};
  const build = () => {
    const server = new McpServer({ name: "counting-upstream", version: "1.0.0" });
    for (const name of ["deploy_service", "drop_database", "hotfix_production", "hotfix_mainframe"]) {
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
  let bridge: string;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  /** The approval pending for the agent's request with this resource and purpose, once there is one. */
  const pendingFor = (resource: string, purpose: string) =>
    until(`an approval pending for ${resource}, ${purpose}`, async () => {
      const list = (await s.http.get(`/v1/approvals?agent=${bot.agentId}&status=pending`).set(admin()).expect(200)).body.approvals as { id: string; request: { resource: string; purpose: string } }[];
      return list.find((a) => a.request.resource === resource && a.request.purpose === purpose)?.id;
    });
  /** Alice's answer, relayed by a chat bridge's approver key. */
  const answer = (id: string, verdict: "approve" | "reject", reason: string) =>
    s.http.post(`/v1/approvals/${id}/${verdict}`).set({ Authorization: `Bearer ${bridge}` }).send({ reason, on_behalf_of: `alice@${bot.orgSlug}.example` }).expect(200);
  const withApproval = async (id: string) => (await decisionRecords(s, bot.agentId)).filter((r) => (r.approval as { id?: string } | undefined)?.id === id);
  const approvalRow = async (id: string) => (await sql(s.claiim.db, "SELECT status, used_by_decision_id FROM approvals WHERE id = $1", [id]))[0];
  /** A stdio upstream (examples/mcp/deploy-server.mjs) logging the calls that reach it, behind a stdio gateway. */
  async function stdioGateway(name: string, extra: Record<string, unknown> = {}) {
    const log = path.join(dir, `${name}.log`);
    const config = path.join(dir, `${name}.json`);
    fs.writeFileSync(
      config,
      JSON.stringify({
        purpose: "deployment through MCP",
        upstreams: { deployer: { command: process.execPath, args: [path.join(ROOT, "examples/mcp/deploy-server.mjs")], env: { DEPLOY_SERVER_LOG: log } } },
        tools: { deploy_service: { action: "deploy", skill: "deploy", resource: { from: "arguments.environment" } } },
        ...extra,
      }),
    );
    const client = new Client({ name: "test-host", version: "1.0.0" });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [CLAIIM_BIN, "mcp-gateway", "--config", config, "--log-level", "warn"], env: { ...getDefaultEnvironment(), ...env }, stderr: "pipe" }));
    const upstreamCalls = (): { tool: string; args: Record<string, unknown> }[] => (fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)) : []);
    return { client, upstreamCalls };
  }

  beforeAll(async () => {
    s = await startTestServer(kind);
    bot = await registerDeployBot(s);
    dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "mcp-"));
    env = { CLAIIM_URL: s.claiim.url, CLAIIM_CLIENT_ID: bot.clientId, CLAIIM_CLIENT_SECRET: bot.clientSecret };
    bridge = (await s.http.post("/v1/api-keys").set(admin()).send({ name: "chat bridge", role: "approver", organization: bot.orgSlug }).expect(201)).body.secret;
  });
  afterAll(async () => {
    await s?.stop();
  });

  describe("stdio client → gateway → stdio upstream (examples/mcp/deploy-server.mjs)", () => {
    let client: Client;
    let upstreamCalls: Awaited<ReturnType<typeof stdioGateway>>["upstreamCalls"];

    beforeAll(async () => {
      ({ client, upstreamCalls } = await stdioGateway("stdio"));
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
      const result = (await client.callTool({ name: "deploy_service", arguments: { service: "checkout", environment: "mainframe" } })) as ToolResult;
      expect(result.isError).toBe(true);
      expect(text(result)).toContain(MAINFRAME_REASON);
      const meta = result._meta!["io.claiim/decision"];
      expect(text(result)).toContain(meta.decision_id);
      expect(meta).toMatchObject({ decision: "deny", reasons: [{ message: MAINFRAME_REASON, code: "no_rule_permits" }] });
      expect(upstreamCalls()).toHaveLength(1);
      const record = (await decisionRecords(s, bot.agentId)).find((r) => r.decision_id === meta.decision_id);
      expect(record).toMatchObject({ decision: "deny", resource: "mainframe", purpose: "deployment through MCP" });
    });

    test("a call that needs a human's approval: a tool error naming the approval, who may approve, where to poll and the decision; called again with the approval id once approved, it runs once", async () => {
      const call = (meta: Record<string, unknown> = {}) =>
        client.callTool({ name: "deploy_service", arguments: { service: "checkout", environment: "production" }, _meta: { "io.claiim/purpose": "release 1.4.0", ...meta } }) as Promise<ToolResult>;
      const asked = await call();
      expect(asked.isError).toBe(true);
      const meta = asked._meta!["io.claiim/decision"];
      expect(meta).toMatchObject({ decision: "approval_required", reasons: [{ code: "approval_required" }], approval: { status: "pending", approvers: { accountable_human: { email: `alice@${bot.orgSlug}.example` } } } });
      const id = meta.approval!.id;
      for (const part of [id, `alice@${bot.orgSlug}.example`, meta.approval!.url, meta.decision_id, `"io.claiim/approval_id": "${id}"`]) expect(text(asked)).toContain(part);
      expect(upstreamCalls()).toHaveLength(1);

      // Too early: CLAIIM's recorded deny, and still nothing upstream.
      const early = await call({ "io.claiim/approval_id": id });
      expect(early).toMatchObject({ isError: true, _meta: { "io.claiim/decision": { decision: "deny", reasons: [{ code: "approval_pending" }] } } });
      // Not an id at all: refused before CLAIIM is asked.
      const records = (await decisionRecords(s, bot.agentId)).length;
      expect(await call({ "io.claiim/approval_id": 42 })).toMatchObject({ isError: true, content: [{ text: expect.stringContaining("must be the id of the approval") }] });
      expect((await decisionRecords(s, bot.agentId)).length).toBe(records);

      await answer(id, "approve", "CHG-1042");
      const done = await call({ "io.claiim/approval_id": id });
      expect(done.isError).toBeFalsy();
      expect(text(done)).toBe("deployed checkout to production");
      expect(done._meta!["io.claiim/decision"]).toMatchObject({ decision: "allow", reasons: [{ code: "approval_granted" }], approval: { id, status: "used" } });
      // The gateway keeps its own metadata to itself.
      expect(upstreamCalls().slice(1)).toEqual([{ tool: "deploy_service", args: { service: "checkout", environment: "production" } }]);
      const again = await call({ "io.claiim/approval_id": id });
      expect(again).toMatchObject({ isError: true, _meta: { "io.claiim/decision": { decision: "deny", reasons: [{ code: "approval_used" }] } } });
      expect(upstreamCalls()).toHaveLength(2);
      expect((await withApproval(id)).map((r) => r.decision)).toEqual(["approval_required", "deny", "allow", "deny"]);
      expect(await approvalRow(id)).toEqual({ status: "used", used_by_decision_id: done._meta!["io.claiim/decision"].decision_id });
    });

    test("unknown tools, and calls whose resource is missing, are refused before anything is asked or run", async () => {
      const before = (await decisionRecords(s, bot.agentId)).length;
      const reached = upstreamCalls().length;
      const unknown = (await client.callTool({ name: "drop_database", arguments: { name: "prod" } })) as ToolResult;
      expect(unknown.isError).toBe(true);
      expect(text(unknown)).toMatch(/not in the gateway's configuration/);
      const noResource = (await client.callTool({ name: "deploy_service", arguments: { service: "checkout", environment: ["staging"] } })) as ToolResult;
      expect(noResource.isError).toBe(true);
      expect(upstreamCalls()).toHaveLength(reached);
      expect((await decisionRecords(s, bot.agentId)).length).toBe(before);
    });

    test("unmapped prompts and resources pass through", async () => {
      const prompt = await client.getPrompt({ name: "release_notes", arguments: { service: "checkout" } });
      expect(prompt.messages[0].content).toMatchObject({ text: "Draft release notes for checkout." });
      const history = await client.readResource({ uri: "deployments://history" });
      expect(JSON.parse((history.contents[0] as { text: string }).text)).toEqual([
        expect.objectContaining({ service: "checkout", environment: "staging" }),
        expect.objectContaining({ service: "checkout", environment: "production" }),
      ]);
    });
  });

  describe("a gateway that waits for the human (wait_for_approval_seconds)", () => {
    const WAIT_SECONDS = 5;
    let client: Client;
    let upstreamCalls: Awaited<ReturnType<typeof stdioGateway>>["upstreamCalls"];
    const waiting = () => s.claiim.approvals.stats().waiting;
    const deployTo = (environment: string, purpose: string, options: { onprogress?: (p: { progress: number; message?: string }) => void; signal?: AbortSignal } = {}) =>
      client.callTool({ name: "deploy_service", arguments: { service: "checkout", environment }, _meta: { "io.claiim/purpose": purpose } }, undefined, options) as Promise<ToolResult>;

    beforeAll(async () => {
      ({ client, upstreamCalls } = await stdioGateway("waiting", { wait_for_approval_seconds: WAIT_SECONDS }));
    });
    afterAll(async () => {
      await client?.close();
    });

    test("tools/list shows a tool that needs a human's approval: calling it is how the approval is asked for", async () => {
      expect((await client.listTools()).tools.map((t) => t.name)).toEqual(["deploy_service"]);
    });

    test("the call holds while the human decides, reports progress, and reaches the upstream once on CLAIIM's allow", async () => {
      const progress: { progress: number; message?: string }[] = [];
      const call = deployTo("production", "waited", { onprogress: (p) => progress.push(p) });
      const id = await pendingFor("production", "waited");
      await until("the gateway to long-poll", () => waiting() === 1);
      expect(upstreamCalls()).toHaveLength(0);
      await answer(id, "approve", "go ahead");
      const result = await call;
      expect(result.isError).toBeFalsy();
      expect(text(result)).toBe("deployed checkout to production");
      expect(result._meta!["io.claiim/decision"]).toMatchObject({ decision: "allow", approval: { id, status: "used" } });
      expect(upstreamCalls()).toHaveLength(1);
      expect(progress[0]).toMatchObject({ progress: 0, message: expect.stringContaining(id) });
      expect((await withApproval(id)).map((r) => r.decision)).toEqual(["approval_required", "allow"]);
    });

    test("rejected while the call waits: a tool error with the approver's reason; nothing reaches the upstream", async () => {
      const call = deployTo("production", "rejected");
      const id = await pendingFor("production", "rejected");
      await until("the gateway to long-poll", () => waiting() === 1);
      await answer(id, "reject", "not during the freeze");
      const result = await call;
      expect(result.isError).toBe(true);
      expect(text(result)).toContain("not during the freeze");
      expect(result._meta!["io.claiim/decision"]).toMatchObject({ decision: "approval_required", reasons: [{ code: "approval_rejected" }], approval: { id, status: "rejected" } });
      expect(upstreamCalls()).toHaveLength(1);
    });

    test("nobody answers in time: a tool error naming the approval, which stays open for a later call with its id", async () => {
      const started = Date.now();
      const result = await deployTo("production", "unanswered");
      expect(Date.now() - started).toBeGreaterThanOrEqual(WAIT_SECONDS * 1000 - 100);
      expect(result.isError).toBe(true);
      const meta = result._meta!["io.claiim/decision"];
      expect(meta).toMatchObject({ reasons: [{ code: "approval_pending" }], approval: { status: "pending" } });
      expect(text(result)).toContain(`"io.claiim/approval_id": "${meta.approval!.id}"`);
      expect(upstreamCalls()).toHaveLength(1);
      await answer(meta.approval!.id, "approve", "back now");
      const later = (await client.callTool({ name: "deploy_service", arguments: { service: "checkout", environment: "production" }, _meta: { "io.claiim/purpose": "unanswered", "io.claiim/approval_id": meta.approval!.id } })) as ToolResult;
      expect(later.isError).toBeFalsy();
      expect(upstreamCalls()).toHaveLength(2);
    });

    test("the client cancels the call: the gateway stops waiting, CLAIIM releases its poll, and the approval stays unused", async () => {
      const controller = new AbortController();
      const call = deployTo("production", "cancelled", { signal: controller.signal }).catch((e: unknown) => e);
      const id = await pendingFor("production", "cancelled");
      await until("the gateway to long-poll", () => waiting() === 1);
      controller.abort();
      expect(await call).toBeInstanceOf(Error);
      // Well before the gateway's own wait would end.
      await until("CLAIIM to release the gateway's poll", () => waiting() === 0, (WAIT_SECONDS * 1000) / 3);
      await answer(id, "approve", "too late");
      // Give a gateway that did not stop waiting time to use the approval: it must not.
      await new Promise((r) => setTimeout(r, 500));
      expect(await approvalRow(id)).toEqual({ status: "approved", used_by_decision_id: null });
      expect(upstreamCalls()).toHaveLength(2);
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
            hotfix_mainframe: { action: "deploy", skill: "deploy", resource: "mainframe" },
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

    test("tools/list is filtered: unknown tools and a tool on a resource the agent may not touch are hidden; one that needs approval is shown", async () => {
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name).sort()).toEqual(["deploy_service", "hotfix_production"]);
      const { resources } = await client.listResources();
      expect(resources.map((r) => r.uri)).toEqual(["notes://readme"]);
    });

    test("an allowed call is counted upstream; a denied one and an unknown one are not", async () => {
      const ok = (await client.callTool({ name: "deploy_service", arguments: { environment: "staging", service: "api" } })) as ToolResult;
      expect(ok.isError).toBeFalsy();
      expect(upstream.calls.deploy_service).toBe(1);
      const denied = (await client.callTool({ name: "hotfix_mainframe", arguments: {} })) as ToolResult;
      expect(denied.isError).toBe(true);
      expect(denied._meta!["io.claiim/decision"]).toMatchObject({ decision: "deny", reasons: [{ message: MAINFRAME_REASON }] });
      expect(upstream.calls.hotfix_mainframe).toBeUndefined();
      const needsApproval = (await client.callTool({ name: "hotfix_production", arguments: {} })) as ToolResult;
      expect(needsApproval).toMatchObject({ isError: true, _meta: { "io.claiim/decision": { decision: "approval_required" } } });
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
