import { Command, Option } from "commander";
import { call, CliError, EXIT, send, target, tokenFileOption, urlOption, type TargetOptions } from "./api";

interface Ready {
  status?: string;
  policy_version?: number;
  detail?: string;
  chron?: {
    writer: { status: string; queued: number; last_commit_at: string | null; error?: string };
    checkpointer: { status: string; last_signed_seq: number; last_signed_at: string | null; unsigned_records: number; lag_seconds: number; error?: string };
  };
}

interface PolicyStatus {
  active_version: number | null;
  active_revision: string | null;
  shadow: { version: number; evaluating: boolean } | null;
  evaluation: { workers: number; evaluations: number; timeouts: number; queued: number };
}

export function statusCommand(): Command {
  return new Command("status")
    .description("How CLAIIM fares: readiness (and why not), the active policy, Chron's writer and checkpoints, approvals waiting. Exit 0 when ready, 1 when not")
    .addOption(new Option("--json", "print the answers as JSON"))
    .addOption(urlOption())
    .addOption(tokenFileOption())
    .action(async (opts: TargetOptions & { json?: boolean }) => {
      const t = target(opts);
      const readyRes = await send(t, "GET", "/readyz");
      const ready = (await readyRes.json().catch(() => ({}))) as Ready;
      const policy = await call<PolicyStatus>(t, "GET", "/v1/policies/status");
      const approvals = await call<{ approvals: unknown[] }>(t, "GET", "/v1/approvals?status=pending&limit=1000");
      if (opts.json) {
        process.stdout.write(JSON.stringify({ url: t.url, ready: readyRes.ok, readiness: ready, policy, pending_approvals: approvals.approvals.length }, null, 2) + "\n");
      } else {
        const c = ready.chron;
        const lines = [
          `CLAIIM at ${t.url}: ${readyRes.ok ? "ready" : `NOT READY: ${ready.detail ?? readyRes.status}`}`,
          `policy: version ${policy.active_version ?? "none"} active${policy.shadow ? `, version ${policy.shadow.version} shadowed${policy.shadow.evaluating ? "" : " (not evaluating)"}` : ""}; ${policy.evaluation.workers} evaluation workers, ${policy.evaluation.evaluations} evaluations, ${policy.evaluation.timeouts} stopped at the deadline`,
          ...(c
            ? [
                `chron writer: ${c.writer.status}${c.writer.error ? ` (${c.writer.error})` : ""}, ${c.writer.queued} queued, last commit ${c.writer.last_commit_at ?? "none since start"}`,
                `chron checkpoints: ${c.checkpointer.status}${c.checkpointer.error ? ` (${c.checkpointer.error})` : ""}, last signed at record ${c.checkpointer.last_signed_seq} (${c.checkpointer.last_signed_at ?? "never"}), ${c.checkpointer.unsigned_records} records unsigned for ${c.checkpointer.lag_seconds} s`,
              ]
            : []),
          `approvals waiting: ${approvals.approvals.length}`,
        ];
        process.stdout.write(lines.join("\n") + "\n");
      }
      if (!readyRes.ok) throw new CliError("", EXIT.refused);
    });
}
