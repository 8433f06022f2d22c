import fs from "node:fs";
import path from "node:path";
import { Command, Option } from "commander";
import { Claiim } from "@claiim/sdk";
import { createLogger } from "../lib/logger";
import { loadGatewayConfig, type GatewayConfig } from "../mcp/config";
import { McpGateway } from "../mcp/gateway";
import { serveHttp, serveStdio } from "../mcp/serve";
import { version } from "../../package.json";

/** The agent's CLAIIM client, from the configuration and the environment (secrets only from the environment or a key file). */
export function claiimClient(config: GatewayConfig, dir: string, env: NodeJS.ProcessEnv = process.env): Claiim {
  const c = config.claiim;
  const url = c.url ?? env.CLAIIM_URL;
  const clientId = c.client_id ?? env.CLAIIM_CLIENT_ID;
  if (!url) throw new Error("say where CLAIIM is: claiim.url in the configuration, or CLAIIM_URL");
  if (!clientId) throw new Error("name the agent's OAuth client: claiim.client_id in the configuration, or CLAIIM_CLIENT_ID");
  const keyFile = c.private_key_file ?? env.CLAIIM_PRIVATE_KEY_FILE;
  if (keyFile) {
    const privateKey = fs.readFileSync(path.resolve(dir, keyFile), "utf8");
    return new Claiim({ url, clientId, privateKey, assertionAudience: c.assertion_audience });
  }
  const secretVar = c.client_secret_env ?? "CLAIIM_CLIENT_SECRET";
  const clientSecret = env[secretVar];
  if (!clientSecret) throw new Error(`the agent's client secret is read from ${secretVar}, which is not set (or give claiim.private_key_file for private_key_jwt)`);
  return new Claiim({ url, clientId, clientSecret });
}

function hostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  if (!m || Number(m[3]) > 65535) throw new Error(`--http wants host:port, e.g. 127.0.0.1:18300 (port 0 picks a free one), got ${value}`);
  return { host: m[1] ?? m[2], port: Number(m[3]) };
}

export function mcpGatewayCommand(): Command {
  return new Command("mcp-gateway")
    .description("Serve MCP between a client and upstream MCP servers, as the agent: every tool call is a CLAIIM decision first")
    .requiredOption("-c, --config <file>", "the gateway's JSON configuration (upstreams, and what each tool means to CLAIIM)")
    .option("--http <host:port>", "serve Streamable HTTP at http://<host:port>/mcp instead of stdio (CLAIIM_GATEWAY_TOKEN, if set, is required as a bearer token)")
    .addOption(new Option("--log-level <level>", "log level (logs go to stderr)").choices(["error", "warn", "info", "debug", "silent"]).default("info"))
    .action(async (opts: { config: string; http?: string; logLevel: string }) => {
      const logger = createLogger(opts.logLevel, process.stderr);
      const { config, dir } = loadGatewayConfig(opts.config);
      const claiim = claiimClient(config, dir);
      // Fail fast on credentials that CLAIIM refuses; an unreachable CLAIIM only refuses calls until it answers.
      try {
        const p = await claiim.permissions();
        logger.info("authenticated to CLAIIM as the agent", { agent: p.agent.name, agent_id: p.agent.id, status: p.agent.status });
      } catch (err) {
        if ((err as Error).name === "AuthenticationError" || (err as Error).name === "RequestError") throw new Error(`CLAIIM refused the agent's credentials: ${(err as Error).message}`);
        logger.warn("CLAIIM cannot be reached yet; calls are refused until it answers", { error: (err as Error).message });
      }
      const gateway = new McpGateway(config, claiim, logger, version, dir);
      await gateway.start();
      let closed: Promise<void>;
      let stopHttp: () => Promise<void> = async () => undefined;
      if (opts.http) {
        const { host, port } = hostPort(opts.http);
        const http = await serveHttp(gateway, host, port, process.env.CLAIIM_GATEWAY_TOKEN || null, logger);
        logger.info("MCP gateway listening", { url: http.url });
        stopHttp = () => http.close();
        closed = new Promise<void>((resolve) => http.server.once("close", () => resolve()));
      } else {
        ({ closed } = await serveStdio(gateway));
      }
      const stop = async () => {
        await stopHttp();
        await gateway.close();
        process.exit(0);
      };
      process.once("SIGINT", () => void stop());
      process.once("SIGTERM", () => void stop());
      await closed;
      await stop();
    });
}
