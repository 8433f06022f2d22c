import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  CallToolRequestSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  PromptListChangedNotificationSchema,
  ReadResourceRequestSchema,
  ResourceListChangedNotificationSchema,
  ToolListChangedNotificationSchema,
  type CallToolResult,
  type Prompt,
  type Resource,
  type ResourceTemplate,
  type ServerCapabilities,
  type Tool,
} from "@modelcontextprotocol/sdk/types.js";
import type { Decision } from "@claiim/sdk";
import type { Logger } from "../lib/logger";
import { META_APPROVAL_ID, type RequestContext } from "./approvals";
import { globMatch, type GatewayConfig, type Governed, type UpstreamConfig } from "./config";
import { DENIED_ERROR_CODE, META_DECISION, META_ON_BEHALF_OF, META_PURPOSE, Meta, allPages, contextOf, decisionMeta } from "./wire";
import { GatewayDecider, type Asker } from "./decider";

interface Upstream {
  name: string;
  client: Client;
  capabilities: ServerCapabilities;
}

export class McpGateway {
  private upstreams: Upstream[] = [];
  private readonly servers = new Set<Server>();
  private tools = new Map<string, { upstream: Upstream; tool: Tool }>();
  private prompts = new Map<string, { upstream: Upstream; prompt: Prompt }>();
  private resourceOwners = new Map<string, Upstream>();
  /** Asking CLAIIM: what the agent may do, and whether it may make one call. */
  private readonly decider: GatewayDecider;

  constructor(
    private readonly config: GatewayConfig,
    claiim: Asker,
    private readonly logger: Logger,
    private readonly version: string,
    /** Relative commands and working folders of stdio upstreams are resolved from here (the configuration's folder). */
    private readonly baseDir: string,
  ) {
    this.decider = new GatewayDecider(config, claiim, logger);
  }

  /** Connects to every upstream server; fails if one cannot be reached. */
  async start(): Promise<void> {
    for (const [name, spec] of Object.entries(this.config.upstreams)) {
      const client = new Client({ name: "claiim-mcp-gateway", version: this.version });
      await client.connect(this.transportFor(spec));
      const upstream: Upstream = { name, client, capabilities: client.getServerCapabilities() ?? {} };
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => this.broadcast((s) => s.sendToolListChanged()));
      client.setNotificationHandler(PromptListChangedNotificationSchema, () => this.broadcast((s) => s.sendPromptListChanged()));
      client.setNotificationHandler(ResourceListChangedNotificationSchema, () => this.broadcast((s) => s.sendResourceListChanged()));
      this.upstreams.push(upstream);
      this.logger.info("upstream MCP server connected", { upstream: name, transport: "command" in spec ? "stdio" : "streamable-http" });
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.servers].map((s) => s.close()));
    await Promise.allSettled(this.upstreams.map((u) => u.client.close()));
  }

  /** A downstream MCP server for one client connection (stdio, or one Streamable HTTP session). */
  createServer(): Server {
    const has = (c: keyof ServerCapabilities) => this.upstreams.some((u) => u.capabilities[c]);
    const capabilities: ServerCapabilities = { tools: { listChanged: true } };
    if (has("prompts")) capabilities.prompts = { listChanged: true };
    if (has("resources")) capabilities.resources = { listChanged: true };
    const server = new Server({ name: "claiim-mcp-gateway", version: this.version }, { capabilities });

    server.setRequestHandler(ListToolsRequestSchema, async () => {
      const [tools, permissions] = await Promise.all([this.listTools(), this.decider.permissions()]);
      return { tools: tools.filter((t) => this.config.tools[t.name] && this.decider.listable(this.config.tools[t.name], permissions)) };
    });
    server.setRequestHandler(CallToolRequestSchema, async (req, extra) => this.callTool(req.params.name, req.params.arguments ?? {}, req.params._meta, contextOf(req.params._meta, extra)));

    if (capabilities.prompts) {
      server.setRequestHandler(ListPromptsRequestSchema, async () => {
        const [prompts, permissions] = await Promise.all([this.listPrompts(), this.decider.permissions()]);
        return { prompts: prompts.filter((p) => (this.config.prompts[p.name] ? this.decider.listable(this.config.prompts[p.name], permissions) : this.config.unmapped_prompts === "pass")) };
      });
      server.setRequestHandler(GetPromptRequestSchema, async (req, extra) => this.getPrompt(req.params.name, req.params.arguments ?? {}, req.params._meta, contextOf(req.params._meta, extra)));
    }
    if (capabilities.resources) {
      server.setRequestHandler(ListResourcesRequestSchema, async () => {
        const [resources, permissions] = await Promise.all([this.listResources(), this.decider.permissions()]);
        return {
          resources: resources.filter((r) => {
            const g = this.resourceRule(r.uri);
            return g ? this.decider.listable(g, permissions, { uri: r.uri }) : this.config.unmapped_resources === "pass";
          }),
        };
      });
      server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => {
        const templates = (await this.fromAll("resources", (u) => allPages((cursor) => u.client.listResourceTemplates({ cursor }), (p) => p.resourceTemplates)))
          .flat() as ResourceTemplate[];
        return { resourceTemplates: templates.filter((t) => this.config.unmapped_resources === "pass" || this.config.resources.some((g) => globMatch(g.uri, t.uriTemplate))) };
      });
      server.setRequestHandler(ReadResourceRequestSchema, async (req, extra) => this.readResource(req.params.uri, req.params._meta, contextOf(req.params._meta, extra)));
    }
    this.servers.add(server);
    server.onclose = () => this.servers.delete(server);
    return server;
  }

  private transportFor(spec: UpstreamConfig) {
    if ("url" in spec) return new StreamableHTTPClientTransport(new URL(spec.url), { requestInit: { headers: spec.headers } });
    // The upstream gets a minimal environment (the SDK's default: PATH, HOME and the like) plus
    // what the configuration gives it, never the gateway's own, which holds the agent's secret.
    return new StdioClientTransport({ command: spec.command, args: spec.args, env: spec.env, cwd: path.resolve(this.baseDir, spec.cwd ?? "."), stderr: "inherit" });
  }

  private broadcast(send: (s: Server) => Promise<void>): void {
    for (const s of this.servers) send(s).catch(() => undefined);
  }

  private async fromAll<T>(capability: keyof ServerCapabilities, fn: (u: Upstream) => Promise<T>): Promise<T[]> {
    return Promise.all(this.upstreams.filter((u) => u.capabilities[capability]).map(fn));
  }

  /** Every upstream's tools, by name. A name two upstreams both offer is refused: which one would run is ambiguous. */
  private async listTools(): Promise<Tool[]> {
    const lists = await this.fromAll("tools", async (u) => ({ u, tools: (await allPages((cursor) => u.client.listTools({ cursor }), (p) => p.tools)) as Tool[] }));
    const seen = new Map<string, { upstream: Upstream; tool: Tool } | null>();
    for (const { u, tools } of lists) {
      for (const tool of tools) {
        if (seen.has(tool.name)) {
          this.logger.error("two upstream servers offer the same tool; it is refused", { tool: tool.name, upstream: u.name });
          seen.set(tool.name, null);
        } else seen.set(tool.name, { upstream: u, tool });
      }
    }
    this.tools = new Map([...seen].filter(([, v]) => v !== null) as [string, { upstream: Upstream; tool: Tool }][]);
    return [...this.tools.values()].map((t) => t.tool);
  }

  private async listPrompts(): Promise<Prompt[]> {
    const lists = await this.fromAll("prompts", async (u) => ({ u, prompts: (await allPages((cursor) => u.client.listPrompts({ cursor }), (p) => p.prompts)) as Prompt[] }));
    const map = new Map<string, { upstream: Upstream; prompt: Prompt }>();
    for (const { u, prompts } of lists) for (const prompt of prompts) if (!map.has(prompt.name)) map.set(prompt.name, { upstream: u, prompt });
    this.prompts = map;
    return [...map.values()].map((p) => p.prompt);
  }

  private async listResources(): Promise<Resource[]> {
    const lists = await this.fromAll("resources", async (u) => ({ u, resources: (await allPages((cursor) => u.client.listResources({ cursor }), (p) => p.resources)) as Resource[] }));
    const out: Resource[] = [];
    for (const { u, resources } of lists) {
      for (const r of resources) {
        if (!this.resourceOwners.has(r.uri)) this.resourceOwners.set(r.uri, u);
        out.push(r);
      }
    }
    return out;
  }

  private resourceRule(uri: string): Governed | undefined {
    return this.config.resources.find((g) => globMatch(g.uri, uri));
  }

  /** Our own keys are for the gateway; the rest (a progress token, say) goes on to the upstream. */
  private forwardMeta(meta: Meta): Meta {
    if (!meta) return undefined;
    const { [META_PURPOSE]: _p, [META_ON_BEHALF_OF]: _o, [META_APPROVAL_ID]: _a, ...rest } = meta;
    return Object.keys(rest).length ? rest : undefined;
  }

  private async callTool(name: string, args: Record<string, unknown>, meta: Meta, ctx: RequestContext): Promise<CallToolResult> {
    const g = this.config.tools[name];
    const refused = (message: string, decision: Decision | null = null): CallToolResult => ({ isError: true, content: [{ type: "text", text: message }], _meta: decisionMeta(decision) });
    if (!g) return refused(`tool "${name}" is not one this agent may call through CLAIIM: it is not in the gateway's configuration`);
    if (!this.tools.has(name)) await this.listTools();
    const target = this.tools.get(name);
    if (!target) return refused(`tool "${name}" is not offered by any upstream server (or by more than one)`);
    const answer = await this.decider.ask("tool", name, g, { arguments: args }, meta, ctx);
    if (!("allowed" in answer)) return refused(answer.message, answer.decision);
    const result = (await target.upstream.client.callTool({ name, arguments: args, _meta: this.forwardMeta(meta) })) as CallToolResult;
    return { ...result, _meta: { ...(result._meta ?? {}), ...decisionMeta(answer.allowed) } };
  }

  private async getPrompt(name: string, args: Record<string, string>, meta: Meta, ctx: RequestContext) {
    if (!this.prompts.has(name)) await this.listPrompts();
    const target = this.prompts.get(name);
    if (!target) throw new McpError(ErrorCode.InvalidParams, `no upstream server offers prompt "${name}"`);
    const g = this.config.prompts[name];
    let decision: Decision | null = null;
    if (g) {
      const answer = await this.decider.ask("prompt", name, g, { arguments: args }, meta, ctx);
      if (!("allowed" in answer)) throw new McpError(DENIED_ERROR_CODE, answer.message, decisionMeta(answer.decision)[META_DECISION]);
      decision = answer.allowed;
    } else if (this.config.unmapped_prompts === "deny") throw new McpError(DENIED_ERROR_CODE, `prompt "${name}" is not in the gateway's configuration, which denies unmapped prompts`);
    const result = await target.upstream.client.getPrompt({ name, arguments: args, _meta: this.forwardMeta(meta) });
    return { ...result, _meta: { ...(result._meta ?? {}), ...decisionMeta(decision) } };
  }

  private async readResource(uri: string, meta: Meta, ctx: RequestContext) {
    if (!this.resourceOwners.has(uri)) await this.listResources();
    const withResources = this.upstreams.filter((u) => u.capabilities.resources);
    // A URI no list named (from a template) goes to the one upstream that has resources, if only one has.
    const owner = this.resourceOwners.get(uri) ?? (withResources.length === 1 ? withResources[0] : undefined);
    if (!owner) throw new McpError(ErrorCode.InvalidParams, `no upstream server offers resource ${uri}`);
    const g = this.resourceRule(uri);
    let decision: Decision | null = null;
    if (g) {
      const answer = await this.decider.ask("resource", uri, g, { uri }, meta, ctx);
      if (!("allowed" in answer)) throw new McpError(DENIED_ERROR_CODE, answer.message, decisionMeta(answer.decision)[META_DECISION]);
      decision = answer.allowed;
    } else if (this.config.unmapped_resources === "deny") throw new McpError(DENIED_ERROR_CODE, `resource ${uri} is not in the gateway's configuration, which denies unmapped resources`);
    const result = await owner.client.readResource({ uri, _meta: this.forwardMeta(meta) });
    return { ...result, _meta: { ...(result._meta ?? {}), ...decisionMeta(decision) } };
  }
}
