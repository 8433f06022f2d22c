import { Command, CommanderError } from "commander";
import { version } from "../../package.json";
import { mcpGatewayCommand } from "./mcp-gateway-command";
import { adminCommand } from "./admin-command";
import { agentsCommand } from "./agents-command";
import { approvalsCommand } from "./approvals-command";
import { CliError, EXIT } from "./api";
import { exportCommand } from "./export-command";
import { publishCommand } from "./publish-command";
import { statusCommand } from "./status-command";
import { verifyCommand } from "./verify-command";

/**
 * `claiim`, the command line. Each subcommand lives in its own module and is added here. Exit
 * statuses (EXIT in api.ts): 0 done, 1 refused or failed, 2 used wrongly, 3 unreachable.
 */
export function program(): Command {
  const p = new Command("claiim")
    .description("CLAIIM: identity, policy and proof for AI agents")
    .version(version)
    .showHelpAfterError()
    .addCommand(statusCommand())
    .addCommand(publishCommand())
    .addCommand(exportCommand())
    .addCommand(verifyCommand())
    .addCommand(agentsCommand())
    .addCommand(approvalsCommand())
    .addCommand(adminCommand())
    .addCommand(mcpGatewayCommand())
    .addHelpText("after", "\nExit status: 0 done; 1 refused or failed; 2 used wrongly; 3 CLAIIM or its database cannot be reached.");
  // Commander's own errors (an unknown option, a missing argument) are misuse: exit 2.
  const misuse = (c: Command) => {
    c.exitOverride((err) => {
      throw err;
    });
    c.commands.forEach(misuse);
  };
  misuse(p);
  return p;
}

export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version end here too, with their own status (0); commander has printed the message.
      process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage);
    }
    const code = err instanceof CliError ? err.exitCode : EXIT.refused;
    // WARNING: one sentence, never a stack trace: an operator reads this, not a developer.
    if ((err as Error).message) process.stderr.write(`claiim: ${(err as Error).message}\n`);
    process.exit(code);
  }
}
