import { randomUUID, timingSafeEqual, createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { Logger } from "../lib/logger";
import type { McpGateway } from "./gateway";

/** Serves the gateway to one MCP client on this process's stdin and stdout (how MCP hosts start local servers). */
export async function serveStdio(gateway: McpGateway): Promise<{ closed: Promise<void> }> {
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.once("end", () => resolve());
  });
  await gateway.createServer().connect(transport);
  return { closed };
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

function jsonRpcError(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message }, id: null }));
}

function sameSecret(given: string, expected: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

export interface HttpGateway {
  url: string;
  server: HttpServer;
  close(): Promise<void>;
}

/**
 * Serves the gateway over MCP's Streamable HTTP transport at /mcp, one session per client. On a
 * loopback address it checks the Host header (against DNS rebinding); on any other address it
 * requires a bearer token, since whoever reaches it acts as the agent.
 */
export async function serveHttp(gateway: McpGateway, host: string, port: number, token: string | null, logger: Logger): Promise<HttpGateway> {
  const loopback = LOOPBACK.has(host);
  if (!loopback && !token) throw new Error(`serving the gateway on ${host}, beyond this machine, needs a token: set CLAIIM_GATEWAY_TOKEN`);
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  let allowedHosts: string[] = [];
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (new URL(req.url ?? "/", "http://gateway").pathname !== "/mcp") return jsonRpcError(res, 404, "the MCP endpoint is /mcp");
    if (token) {
      const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? "");
      if (!m || !sameSecret(m[1], token)) {
        res.setHeader("WWW-Authenticate", 'Bearer realm="claiim-mcp-gateway"');
        return jsonRpcError(res, 401, "send the gateway's token as Authorization: Bearer <token>");
      }
    }
    const sid = req.headers["mcp-session-id"];
    const existing = typeof sid === "string" ? sessions.get(sid) : undefined;
    if (existing) return existing.handleRequest(req, res);
    if (sid !== undefined) return jsonRpcError(res, 404, "unknown or expired MCP session");
    if (req.method !== "POST") return jsonRpcError(res, 400, "start a session with an initialize request (POST)");
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        sessions.set(id, transport);
      },
      enableDnsRebindingProtection: loopback,
      allowedHosts,
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await gateway.createServer().connect(transport);
    await transport.handleRequest(req, res);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      logger.error("MCP HTTP request failed", { error: err.message });
      if (!res.headersSent) jsonRpcError(res, 500, "internal error");
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  allowedHosts = [`127.0.0.1:${actual}`, `localhost:${actual}`, `[::1]:${actual}`];
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${actual}/mcp`;
  return {
    url,
    server,
    async close() {
      await Promise.allSettled([...sessions.values()].map((t) => t.close()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
