import fs from "node:fs";
import path from "node:path";
import { Command } from "commander";
import { call, CliError, EXIT, send, describeProblem, target, tokenFileOption, urlOption, type TargetOptions } from "./api";

/** The policy files of a folder (.rego, .json, .yaml), by path relative to it. */
export function policyFiles(dir: string): Record<string, string> {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new CliError(`no folder ${dir}`, EXIT.usage);
  const files: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const name = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(name);
      else if (entry.isFile() && /\.(rego|json|ya?ml)$/.test(entry.name)) files[name] = fs.readFileSync(path.join(dir, name), "utf8");
    }
  };
  walk("");
  if (Object.keys(files).length === 0) throw new CliError(`${dir} holds no .rego, .json or .yaml file`, EXIT.usage);
  return files;
}

interface Published {
  version: number;
  revision: string;
  active: boolean;
  parent: number | null;
  warnings?: { file: string; message: string; diff?: string }[];
}

export function publishCommand(): Command {
  return new Command("publish")
    .description("Publish a folder of policies (Rego, data) as a new version; OPA's errors or the failing tests are printed when CLAIIM refuses it")
    .option("-d, --dir <folder>", "the policy folder", "rego")
    .option("-m, --message <text>", "why (recorded with the version)")
    .option("--activate", "activate the new version at once")
    .option("--shadow", "set the new version as the shadow of the active one (evaluated on every decision, never enforced)")
    .addOption(urlOption())
    .addOption(tokenFileOption())
    .action(async (opts: TargetOptions & { dir: string; message?: string; activate?: boolean; shadow?: boolean }) => {
      if (opts.activate && opts.shadow) throw new CliError("--activate and --shadow exclude each other", EXIT.usage);
      const files = policyFiles(opts.dir);
      const t = target(opts);
      const res = await send(t, "POST", "/v1/policies", { files, message: opts.message ?? `published from ${opts.dir}/`, activate: !!opts.activate });
      const body = (await res.json().catch(() => ({}))) as Published;
      if (res.status !== 201) throw new CliError(describeProblem(res.status, body), res.status === 503 ? EXIT.unreachable : EXIT.refused);
      process.stdout.write(`published version ${body.version} (${body.revision})${body.active ? ", active" : ""}; parent ${body.parent ?? "none"}\n`);
      for (const w of body.warnings ?? []) process.stdout.write(`warning: ${w.file}: ${w.message}\n${w.diff ?? ""}`);
      if (!opts.shadow) return;
      try {
        const set = await call<{ version: number; since: string }>(t, "PUT", "/v1/policies/shadow", { version: body.version });
        process.stdout.write(`version ${set.version} is the shadow since ${set.since}; report: ${t.url}/v1/policies/shadow/report\n`);
      } catch (err) {
        throw new CliError(`published, but not set as the shadow: ${(err as Error).message}`, (err as CliError).exitCode ?? EXIT.refused);
      }
    });
}
