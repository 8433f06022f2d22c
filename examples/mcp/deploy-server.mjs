#!/usr/bin/env node
// A small upstream MCP server for the deployment story: it deploys services (pretend) and keeps
// their history. Over stdio by default; `--http <port>` serves Streamable HTTP at /mcp instead.
// DEPLOY_SERVER_LOG=<file> appends one JSON line per tool call that reaches it.
import fs from "node:fs";
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

const history = [];
const logCall = (tool, args) => {
  if (process.env.DEPLOY_SERVER_LOG) fs.appendFileSync(process.env.DEPLOY_SERVER_LOG, `${JSON.stringify({ tool, args })}\n`);
};

function deployServer() {
  const server = new McpServer({ name: "deploy-server", version: "1.0.0" });
  server.registerTool(
    "deploy_service",
    {
      description: "Deploy a service to an environment",
      inputSchema: { service: z.string(), environment: z.string(), version: z.string().optional() },
    },
    async (args) => {
      logCall("deploy_service", args);
      history.push({ ...args, at: new Date().toISOString() });
      return { content: [{ type: "text", text: `deployed ${args.service}${args.version ? ` ${args.version}` : ""} to ${args.environment}` }] };
    },
  );
  server.registerTool(
    "drop_database",
    { description: "Drop a database (no agent should ever reach this)", inputSchema: { name: z.string() } },
    async (args) => {
      logCall("drop_database", args);
      return { content: [{ type: "text", text: `dropped ${args.name}` }] };
    },
  );
  server.registerResource("history", "deployments://history", { description: "Deployments made so far", mimeType: "application/json" }, async (uri) => ({
    contents: [{ uri: uri.href, mimeType: "application/json", text: JSON.stringify(history) }],
  }));
  server.registerPrompt("release_notes", { description: "Draft release notes for a service", argsSchema: { service: z.string() } }, ({ service }) => ({
    messages: [{ role: "user", content: { type: "text", text: `Draft release notes for ${service}.` } }],
  }));
  return server;
}

const httpAt = process.argv.indexOf("--http");
if (httpAt === -1) {
  await deployServer().connect(new StdioServerTransport());
} else {
  const sessions = new Map();
  const http = createServer(async (req, res) => {
    const sid = req.headers["mcp-session-id"];
    let transport = sid ? sessions.get(sid) : undefined;
    if (!transport) {
      transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), onsessioninitialized: (id) => sessions.set(id, transport) });
      await deployServer().connect(transport);
    }
    await transport.handleRequest(req, res);
  });
  http.listen(Number(process.argv[httpAt + 1] ?? 0), "127.0.0.1", () => {
    process.stderr.write(`deploy-server listening on http://127.0.0.1:${http.address().port}/mcp\n`);
  });
}
