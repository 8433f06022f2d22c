#!/usr/bin/env node
// An MCP client, as Claude Desktop or any MCP host would connect: it starts `claiim mcp-gateway`
// over stdio, which starts deploy-server.mjs and asks CLAIIM before every tool call. A production
// deploy waits (up to 50 s) for a human to approve it: approve it as the README's walkthrough shows.
// Needs CLAIIM_URL, CLAIIM_CLIENT_ID and CLAIIM_CLIENT_SECRET (deploy-bot's OAuth client).
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const env = { ...getDefaultEnvironment() };
for (const name of ["CLAIIM_URL", "CLAIIM_CLIENT_ID", "CLAIIM_CLIENT_SECRET"]) if (process.env[name]) env[name] = process.env[name];

const client = new Client({ name: "example-mcp-host", version: "1.0.0" });
await client.connect(
  new StdioClientTransport({ command: process.execPath, args: [path.join(here, "../../bin/claiim"), "mcp-gateway", "--config", path.join(here, "gateway.json"), "--log-level", "warn"], env }),
);

const { tools } = await client.listTools();
console.log("tools the agent may call:", tools.map((t) => t.name).join(", "));

for (const environment of ["staging", "production"]) {
  let told = false;
  const result = await client.callTool(
    { name: "deploy_service", arguments: { service: "checkout", environment, version: "1.4.0" }, _meta: { "io.claiim/purpose": "release 1.4.0" } },
    undefined,
    {
      // The gateway waits for a human's approval (wait_for_approval_seconds in gateway.json) and
      // reports progress meanwhile: say once whom it waits for, and keep the request alive.
      onprogress: (p) => {
        if (!told && p.message) console.log(`${environment}: ${p.message}`);
        told = true;
      },
      resetTimeoutOnProgress: true,
    },
  );
  const text = result.content.map((c) => c.text).join(" ");
  console.log(`${environment}: ${result.isError ? "refused" : "done"}: ${text}`);
}
await client.close();
