import { Command, Option } from "commander";
import { call, CliError, EXIT, table, target, tokenFileOption, urlOption, type TargetOptions } from "./api";

interface Agent {
  id: string;
  organization: string;
  name: string;
  owner: { email: string } | null;
  status: string;
  status_reason: string | null;
  skills: { name: string; version: string }[];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const rowOf = (a: Agent) => ({
  id: a.id,
  organization: a.organization,
  name: a.name,
  owner: a.owner?.email ?? null,
  status: a.status,
  skills: a.skills.map((s) => `${s.name}@${s.version}`).join(","),
});

/** An agent by id, or by name (with --organization when two organisations have one of that name). */
async function resolveAgent(t: ReturnType<typeof target>, ref: string, organization?: string): Promise<Agent> {
  if (UUID.test(ref)) return call<Agent>(t, "GET", `/v1/agents/${ref}`);
  const q = new URLSearchParams({ q: ref, ...(organization ? { organization } : {}) });
  const found = (await call<{ agents: Agent[] }>(t, "GET", `/v1/agents?${q}`)).agents.filter((a) => a.name === ref);
  if (found.length === 0) throw new CliError(`no agent named ${ref}${organization ? ` in ${organization}` : ""}`, EXIT.refused);
  if (found.length > 1) throw new CliError(`${found.length} agents are named ${ref} (in ${found.map((a) => a.organization).join(", ")}): give --organization or the id`, EXIT.usage);
  return found[0];
}

export function agentsCommand(): Command {
  const agents = new Command("agents").description("The agent inventory, and the kill switch");
  agents
    .command("list")
    .description("List agents (name, organisation, accountable human, status, skills)")
    .option("--organization <slug>", "only this organisation's")
    .addOption(new Option("--status <status>", "only agents in this status").choices(["active", "suspended", "retired"]))
    .option("--owner <email>", "only agents this human is accountable for")
    .option("--json", "print the API's answer as JSON")
    .addOption(urlOption())
    .addOption(tokenFileOption())
    .action(async (opts: TargetOptions & { organization?: string; status?: string; owner?: string; json?: boolean }) => {
      const t = target(opts);
      const q = new URLSearchParams();
      if (opts.organization) q.set("organization", opts.organization);
      if (opts.status) q.set("status", opts.status);
      if (opts.owner) q.set("owner", opts.owner);
      const { agents: found } = await call<{ agents: Agent[] }>(t, "GET", `/v1/agents${q.size ? `?${q}` : ""}`);
      process.stdout.write(opts.json ? JSON.stringify(found, null, 2) + "\n" : found.length ? table(found.map(rowOf), ["id", "organization", "name", "owner", "status", "skills"]) : "no agents\n");
    });
  agents
    .command("suspend <agent>")
    .description("Suspend an agent (by id, or by name): its very next decision is a deny. Recorded in Chron with the reason")
    .requiredOption("-r, --reason <text>", "why (recorded in Chron)")
    .option("--organization <slug>", "the agent's organisation, when its name is not unique")
    .addOption(urlOption())
    .addOption(tokenFileOption())
    .action(async (ref: string, opts: TargetOptions & { reason: string; organization?: string }) => {
      const t = target(opts);
      const agent = await resolveAgent(t, ref, opts.organization);
      const after = await call<Agent>(t, "POST", `/v1/agents/${agent.id}/suspend`, { reason: opts.reason });
      process.stdout.write(`suspended ${after.name} (${after.id}) in ${after.organization}: ${after.status_reason ?? opts.reason}\n`);
    });
  return agents;
}
