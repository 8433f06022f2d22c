// The deployment agent in TypeScript. With CLAIIM running and deploy-bot's OAuth client in
// CLAIIM_CLIENT_ID and CLAIIM_CLIENT_SECRET (see the README), in the project folder:
//   npx tsx examples/typescript/deploy-agent.ts
import { Claiim, DeniedError } from "@claiim/sdk";

const claiim = new Claiim({
  url: process.env.CLAIIM_URL ?? "http://127.0.0.1:8080",
  clientId: process.env.CLAIIM_CLIENT_ID!,
  clientSecret: process.env.CLAIIM_CLIENT_SECRET!,
});

async function deploy(service: string, environment: string): Promise<string> {
  // The real work would go here; it runs only when CLAIIM allows it.
  return `${service} 1.4.0 is live on ${environment}`;
}

async function main(): Promise<void> {
  for (const environment of ["staging", "production"]) {
    try {
      const done = await claiim.guard(
        { action: "deploy", resource: environment, purpose: "release 1.4.0", skill: "deploy@1.2.0" },
        () => deploy("checkout", environment),
      );
      console.log(`${environment}: allowed: ${done}`);
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
