import fs from "node:fs";
import { Command, Option } from "commander";
import { CliError, EXIT, describeProblem, progressBar, send, target, tokenFileOption, urlOption, type Target, type TargetOptions } from "./api";

interface Header {
  chron_export: "header";
  selection: "contiguous" | "merkle";
  count: number;
  first_seq: number | null;
  last_seq: number | null;
  prev_hash: string | null;
}

interface Options extends TargetOptions {
  out: string;
  format: "ndjson" | "csv" | "json";
  fromSeq?: string;
  toSeq?: string;
  from?: string;
  to?: string;
  organization?: string;
  agent?: string;
  restart?: boolean;
}

/** Where an interrupted NDJSON export stands: its header, and the last record fully written. */
interface PartState {
  header: Header;
  written: number;
  last: { seq: number; hash: string } | null;
}

/**
 * Reads what an interrupted export left in `<out>.part`, dropping a last line cut in the middle.
 * Only a contiguous range resumes: its records are the chain's, byte for byte, whenever they are read.
 */
function readPart(file: string): PartState {
  const text = fs.readFileSync(file, "utf8");
  const complete = text.lastIndexOf("\n") + 1;
  if (complete < text.length) fs.truncateSync(file, Buffer.byteLength(text.slice(0, complete)));
  const lines = text.slice(0, complete).split("\n").filter((l) => l !== "");
  let header: Header;
  try {
    header = JSON.parse(lines[0] ?? "") as Header;
  } catch {
    throw new CliError(`${file} does not start with an export header: start again with --restart`, EXIT.usage);
  }
  if (header.chron_export !== "header" || header.selection !== "contiguous") {
    throw new CliError(`${file} is not a contiguous NDJSON export (only those resume): start again with --restart`, EXIT.usage);
  }
  let last: PartState["last"] = null;
  for (const line of lines.slice(1)) {
    const r = JSON.parse(line) as { seq?: number; hash?: string; chron_export?: string };
    if (r.chron_export) throw new CliError(`${file} already ends (${r.chron_export}): start again with --restart`, EXIT.usage);
    last = { seq: r.seq!, hash: r.hash! };
  }
  return { header, written: lines.length - 1, last };
}

function query(opts: Options, range: { fromSeq?: number; toSeq?: number }): string {
  const q = new URLSearchParams({ format: opts.format });
  const set = (k: string, v: string | number | undefined) => v !== undefined && q.set(k, String(v));
  set("from_seq", range.fromSeq ?? opts.fromSeq);
  set("to_seq", range.toSeq ?? opts.toSeq);
  set("from", opts.from);
  set("to", opts.to);
  set("organization", opts.organization);
  set("agent", opts.agent);
  return `/v1/chron/export?${q}`;
}

/** Lines of a streamed body, as they arrive. */
async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    rest += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, i);
      rest = rest.slice(i + 1);
    }
  }
  rest += decoder.decode();
  if (rest) yield rest;
}

function write(out: fs.WriteStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (out.write(text)) resolve();
    else out.once("drain", resolve).once("error", reject);
  });
}

/**
 * Streams one export request into the part file. When resuming, the new response's header is
 * checked against the part's (same range end, and the first new record chains from the last one
 * written) and not written; the trailer written is the whole export's.
 */
async function stream(t: Target, opts: Options, part: string, state: PartState | null): Promise<{ count: number; first: number | null; last: number | null }> {
  const resuming = state !== null;
  const res = await send(t, "GET", query(opts, state ? { fromSeq: (state.last?.seq ?? (state.header.first_seq ?? 1) - 1) + 1, toSeq: state.header.last_seq ?? undefined } : {}));
  if (!res.ok || !res.body) {
    const body = await res.json().catch(() => ({}));
    throw new CliError(describeProblem(res.status, body), res.status === 503 ? EXIT.unreachable : EXIT.refused);
  }
  const out = fs.createWriteStream(part, { flags: resuming ? "a" : "w" });
  const bar = progressBar("exporting");
  let header: Header | null = state?.header ?? null;
  let written = state?.written ?? 0;
  let last = state?.last ?? null;
  let done = false;
  try {
    let first = true;
    for await (const line of lines(res.body)) {
      if (opts.format !== "ndjson") {
        await write(out, `${line}\n`);
        continue;
      }
      const item = JSON.parse(line) as { chron_export?: string; seq?: number; hash?: string; message?: string; prev_hash?: string | null; last_seq?: number | null };
      if (first) {
        first = false;
        if (item.chron_export !== "header") throw new CliError("the export did not start with its header", EXIT.refused);
        if (!resuming) {
          header = item as unknown as Header;
          await write(out, `${line}\n`);
        } else if (item.prev_hash !== (last?.hash ?? state.header.prev_hash) || item.last_seq !== state.header.last_seq) {
          throw new CliError(`the records after ${last?.seq ?? "the start"} no longer chain from what ${part} holds: start again with --restart`, EXIT.refused);
        }
        bar.start(header!.count, written);
        continue;
      }
      if (item.chron_export === "error") throw new CliError(`CLAIIM stopped the export after ${written} records: ${item.message}; run the same command again to resume`, EXIT.refused);
      if (item.chron_export === "trailer") {
        // The whole export's trailer: what the server writes for an uninterrupted one.
        const trailer = resuming ? { chron_export: "trailer", count: written, last_seq: header!.last_seq, last_hash: last?.hash ?? null, complete: true } : item;
        await write(out, `${JSON.stringify(trailer)}\n`);
        done = true;
        continue;
      }
      await write(out, `${line}\n`);
      written += 1;
      last = { seq: item.seq!, hash: item.hash! };
      bar.update(written);
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`the export was cut after ${written} records (${(err as Error).message}); run the same command again to resume`, EXIT.unreachable);
  } finally {
    bar.stop();
    await new Promise<void>((resolve) => out.end(resolve));
  }
  if (opts.format === "ndjson" && !done) throw new CliError(`the export was cut after ${written} records; run the same command again to resume`, EXIT.unreachable);
  return { count: header?.count ?? written, first: header?.first_seq ?? null, last: header?.last_seq ?? null };
}

export function exportCommand(): Command {
  return new Command("export")
    .description("Export Chron to a file, with a progress bar; an interrupted NDJSON export of a range resumes where it stopped when run again")
    .requiredOption("-o, --out <file>", "the file to write (written as <file>.part until complete)")
    .addOption(new Option("--format <format>", "ndjson (resumable), csv or json").choices(["ndjson", "csv", "json"]).default("ndjson"))
    .option("--from-seq <n>", "first record")
    .option("--to-seq <n>", "last record (default: the chain's head when the export starts)")
    .option("--from <time>", "from this time (RFC 3339)")
    .option("--to <time>", "until this time, exclusive (RFC 3339)")
    .option("--organization <slug>", "only this organisation's records, with Merkle proofs (does not resume)")
    .option("--agent <id>", "only this agent's records, with Merkle proofs (does not resume)")
    .option("--restart", "discard what an interrupted export left and start again")
    .addOption(urlOption())
    .addOption(tokenFileOption())
    .action(async (opts: Options) => {
      for (const k of ["fromSeq", "toSeq"] as const) if (opts[k] !== undefined && !/^\d+$/.test(opts[k]!)) throw new CliError(`--${k === "fromSeq" ? "from-seq" : "to-seq"} must be a whole number`, EXIT.usage);
      if (fs.existsSync(opts.out)) throw new CliError(`${opts.out} exists: remove it or choose another --out`, EXIT.usage);
      const part = `${opts.out}.part`;
      if (opts.restart) fs.rmSync(part, { force: true });
      const state = fs.existsSync(part) ? readPart(part) : null;
      if (state && opts.format !== "ndjson") throw new CliError("only NDJSON exports resume: start again with --restart", EXIT.usage);
      if (state) process.stderr.write(`resuming ${part} after record ${state.last?.seq ?? "none"} (${state.written} of ${state.header.count} written)\n`);
      const t = target(opts);
      const r = await stream(t, opts, part, state);
      fs.renameSync(part, opts.out);
      process.stdout.write(`exported ${r.count} records (${r.first ?? "-"}..${r.last ?? "-"}) to ${opts.out}; check it offline: claiim verify ${opts.out} --jwks jwks.json\n`);
    });
}
