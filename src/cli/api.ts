// What the operator's commands share: where CLAIIM is and with which credential, requests that
// fail with a sentence (never a stack trace), the exit statuses, and progress bars.
import fs from "node:fs";
import path from "node:path";
import { Option } from "commander";
import { SingleBar } from "cli-progress";

/**
 * Exit statuses of every claiim command (docs/operations.md):
 * 0 done; 1 refused or failed (CLAIIM said no, a check found a problem); 2 used wrongly (an
 * argument, a missing credential or file); 3 CLAIIM or its database cannot be reached.
 */
export const EXIT = { ok: 0, refused: 1, usage: 2, unreachable: 3 } as const;

/** An error the command reports in one sentence, with its exit status. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.refused,
  ) {
    super(message);
  }
}

export interface Target {
  url: string;
  token: string;
}

export interface TargetOptions {
  url?: string;
  tokenFile?: string;
}

export const urlOption = () => new Option("--url <url>", "where CLAIIM is (default: CLAIIM_URL, else http://HOST:PORT from the environment, else http://127.0.0.1:8080)");
export const tokenFileOption = () => new Option("--token-file <file>", "a file holding the credential (default: CLAIIM_TOKEN, else <CLAIIM_DATA_DIR>/bootstrap-admin.token)");

/** CLAIIM's URL: --url, CLAIIM_URL, or the HOST and PORT CLAIIM itself would listen on. */
export function claiimUrl(opts: TargetOptions, env: NodeJS.ProcessEnv = process.env): string {
  const host = env.HOST && env.HOST !== "0.0.0.0" && env.HOST !== "::" ? env.HOST : "127.0.0.1";
  const url = opts.url ?? env.CLAIIM_URL ?? `http://${host.includes(":") ? `[${host}]` : host}:${env.PORT || 8080}`;
  if (!/^https?:\/\/[^\s/]+/.test(url)) throw new CliError(`not an http(s) URL: ${url}`, EXIT.usage);
  return url.replace(/\/+$/, "");
}

/** The credential: --token-file, CLAIIM_TOKEN, or the bootstrap credential in the data folder. */
export function claiimToken(opts: TargetOptions, env: NodeJS.ProcessEnv = process.env): string {
  if (opts.tokenFile) return readToken(opts.tokenFile);
  if (env.CLAIIM_TOKEN) return env.CLAIIM_TOKEN.trim();
  const bootstrap = path.join(env.CLAIIM_DATA_DIR || "data", "bootstrap-admin.token");
  if (fs.existsSync(bootstrap)) return readToken(bootstrap);
  throw new CliError(`no credential: set CLAIIM_TOKEN, or give --token-file (${bootstrap} does not exist)`, EXIT.usage);
}

function readToken(file: string): string {
  try {
    const token = fs.readFileSync(file, "utf8").trim();
    if (token) return token;
  } catch (err) {
    throw new CliError(`cannot read the credential file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, EXIT.usage);
  }
  throw new CliError(`the credential file ${file} is empty`, EXIT.usage);
}

export function target(opts: TargetOptions, env: NodeJS.ProcessEnv = process.env): Target {
  return { url: claiimUrl(opts, env), token: claiimToken(opts, env) };
}

/** Why a fetch failed before any answer, in words. */
function unreachable(url: string, err: unknown): CliError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code === "ECONNREFUSED" ? "connection refused" : (cause?.code ?? cause?.message ?? (err as Error).message);
  return new CliError(`cannot reach CLAIIM at ${url} (${why}): is it running there? Set CLAIIM_URL or --url`, EXIT.unreachable);
}

/** A problem answer (RFC 9457) as one line, with OPA's errors or failing tests when it has them. */
export function describeProblem(status: number, body: unknown): string {
  const p = (body && typeof body === "object" ? body : {}) as { code?: string; detail?: string; opa_errors?: { file: string; row: number; col: number; code: string; message: string }[]; failing_tests?: { name: string; file: string; row: number }[] };
  let text = `refused (${status}${p.code ? ` ${p.code}` : ""}): ${p.detail ?? "no detail"}`;
  for (const e of p.opa_errors ?? []) text += `\n  ${e.file}:${e.row}:${e.col}: ${e.code}: ${e.message}`;
  for (const t of p.failing_tests ?? []) text += `\n  failing test ${t.name} at ${t.file}:${t.row}`;
  return text;
}

/** A request to CLAIIM; the raw response for the caller to read (streams), or a CliError. */
export async function send(t: Target, method: string, pathAndQuery: string, body?: unknown, init: { signal?: AbortSignal } = {}): Promise<Response> {
  const headers: Record<string, string> = { Authorization: `Bearer ${t.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    return await fetch(`${t.url}${pathAndQuery}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: init.signal });
  } catch (err) {
    throw unreachable(t.url, err);
  }
}

/** A JSON request whose answer must be 2xx; a problem becomes a CliError naming it. */
export async function call<T>(t: Target, method: string, pathAndQuery: string, body?: unknown): Promise<T> {
  const res = await send(t, method, pathAndQuery, body);
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // Not JSON: reported below if the status is not a success.
  }
  if (!res.ok) throw new CliError(describeProblem(res.status, parsed ?? { detail: text.slice(0, 200) }), res.status === 503 ? EXIT.unreachable : EXIT.refused);
  return parsed as T;
}

/** A progress bar on stderr when it is a terminal; nothing otherwise (scripts and logs get the result line only). */
export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr): { start(total: number, from?: number): void; update(value: number): void; increment(): void; stop(): void } {
  if (!stream.isTTY) return { start() {}, update() {}, increment() {}, stop() {} };
  const bar = new SingleBar({ format: `${label} [{bar}] {percentage}% | {value}/{total} records | {eta_formatted} left`, stream, hideCursor: true, etaBuffer: 200 });
  let started = false;
  return {
    start(total, from = 0) {
      bar.start(total, from);
      started = true;
    },
    update: (value) => started && bar.update(value),
    increment: () => started && bar.increment(),
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

/** Prints rows as aligned columns (for lists a person reads); --json gives the API's own answer. */
export function table(rows: Record<string, unknown>[], columns: string[]): string {
  const cell = (v: unknown) => (v === null || v === undefined ? "-" : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join("\n") + "\n";
}
