import { Command, Option } from "commander";
import { call, table, target, tokenFileOption, urlOption, type TargetOptions } from "./api";

interface Approval {
  id: string;
  status: string;
  organization: string;
  agent: { id: string; name: string };
  accountable_human: { email: string } | null;
  request: { action: string; resource: string; purpose: string };
  expires_at: string;
  decided_by: { name: string; human: { email: string } | null } | null;
  decision_reason: string | null;
}

function answer(verb: "approve" | "reject"): Command {
  return new Command(verb)
    .argument("<id>", "the approval's id")
    .description(`${verb === "approve" ? "Approve" : "Reject"} an approval, with a reason (recorded in Chron); an approver key relays a named human with --on-behalf-of`)
    .requiredOption("-r, --reason <text>", "why (recorded in Chron)")
    .option("--on-behalf-of <email>", "the human whose answer an approver key relays")
    .addOption(urlOption())
    .addOption(tokenFileOption())
    .action(async (id: string, opts: TargetOptions & { reason: string; onBehalfOf?: string }) => {
      const t = target(opts);
      const a = await call<Approval>(t, "POST", `/v1/approvals/${encodeURIComponent(id)}/${verb}`, { reason: opts.reason, ...(opts.onBehalfOf ? { on_behalf_of: opts.onBehalfOf } : {}) });
      process.stdout.write(`${a.id}: ${a.status} by ${a.decided_by?.human?.email ?? a.decided_by?.name ?? "?"}: ${a.decision_reason ?? opts.reason}\n`);
    });
}

export function approvalsCommand(): Command {
  const approvals = new Command("approvals").description("Human approvals: what waits, and the answer");
  approvals
    .command("list")
    .description("Approvals open or closed within the last day, newest first (pending only by default)")
    .addOption(new Option("--status <status>", "pending, approved, rejected, expired, used, or all").choices(["pending", "approved", "rejected", "expired", "used", "all"]).default("pending"))
    .option("--organization <slug>", "only this organisation's")
    .option("--agent <id>", "only this agent's")
    .option("--json", "print the API's answer as JSON")
    .addOption(urlOption())
    .addOption(tokenFileOption())
    .action(async (opts: TargetOptions & { status: string; organization?: string; agent?: string; json?: boolean }) => {
      const t = target(opts);
      const q = new URLSearchParams({ limit: "1000" });
      if (opts.status !== "all") q.set("status", opts.status);
      if (opts.organization) q.set("organization", opts.organization);
      if (opts.agent) q.set("agent", opts.agent);
      const { approvals: found } = await call<{ approvals: Approval[] }>(t, "GET", `/v1/approvals?${q}`);
      const rows = found.map((a) => ({
        id: a.id,
        status: a.status,
        agent: a.agent.name,
        request: `${a.request.action} ${a.request.resource}`,
        purpose: a.request.purpose,
        approver: a.accountable_human?.email ?? null,
        expires: a.expires_at,
      }));
      process.stdout.write(opts.json ? JSON.stringify(found, null, 2) + "\n" : rows.length ? table(rows, ["id", "status", "agent", "request", "purpose", "approver", "expires"]) : "no approvals\n");
    });
  approvals.addCommand(answer("approve"));
  approvals.addCommand(answer("reject"));
  return approvals;
}
