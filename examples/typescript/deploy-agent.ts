// The deployment agent in TypeScript. With CLAIIM running and deploy-bot's OAuth client in
// CLAIIM_CLIENT_ID and CLAIIM_CLIENT_SECRET (see the README), in the project folder:
//   npx tsx examples/typescript/deploy-agent.ts
// Staging is allowed. Production waits for a human's approval (up to 10 minutes): approve it as
// the README's walkthrough shows, and the agent deploys, once.
import { ApprovalRequiredError, Claiim, DeniedError, notAllowed } from "@claiim/sdk";

const claiim = new Claiim({
  url: process.env.CLAIIM_URL ?? "http://127.0.0.1:8080",
  clientId: process.env.CLAIIM_CLIENT_ID!,
  clientSecret: process.env.CLAIIM_CLIENT_SECRET!,
});

async function deploy(service: string, environment: string): Promise<string> {
  // The real work would go here; it runs only when CLAIIM allows it.
  return `${service} 1.4.0 is live on ${environment}`;
}

async function release(environment: string): Promise<string> {
  const request = { action: "deploy", resource: environment, purpose: "release 1.4.0", skill: "deploy@1.2.0" };
  try {
    return await claiim.guard(request, () => deploy("checkout", environment));
  } catch (err) {
    if (!(err instanceof ApprovalRequiredError)) throw err;
    // Tell whoever runs the agent whom it waits for; a one-liner without this is
    // claiim.guard(request, fn, { waitForApproval: { timeoutMs } }).
    const approvers = err.approval.approvers as { accountable_human?: { email: string } | null } | undefined;
    console.log(`${environment}: waiting for ${approvers?.accountable_human?.email ?? "an approver"} to approve ${err.approval.id}`);
    // Rejected, expired or not answered in time, it throws (a DeniedError with the reasons).
    const decision = await claiim.waitForApproval(err, { timeoutMs: 10 * 60_000 });
    if (!decision.allowed) throw notAllowed(decision);
    return `${await deploy("checkout", environment)} (approval ${err.approval.id})`;
  }
}

async function main(): Promise<void> {
  for (const environment of ["staging", "production"]) {
    try {
      console.log(`${environment}: allowed: ${await release(environment)}`);
    } catch (err) {
      if (!(err instanceof DeniedError)) throw err;
      console.log(`${environment}: denied: ${err.reasons.map((r) => r.message).join("; ")} (decision ${err.decisionId})`);
    }
  }
}

main().catch((err: Error) => {
  console.error(`deploy-agent: ${err.message}`);
  process.exit(1);
});
