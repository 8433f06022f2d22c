import { Command } from "commander";
import { version } from "../../package.json";
import { mcpGatewayCommand } from "./mcp-gateway-command";

/**
 * `claiim`, the command line. Each subcommand lives in its own module and is added here; the
 * operator's commands will join mcp-gateway.
 */
export function program(): Command {
  return new Command("claiim")
    .description("CLAIIM: identity, policy and proof for AI agents")
    .version(version)
    .showHelpAfterError()
    .addCommand(mcpGatewayCommand());
}

export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (err) {
    process.stderr.write(`claiim: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
