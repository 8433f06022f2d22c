import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import type { Logger } from "../lib/logger";
import { verifyConsistency } from "./merkle";
import type { ChronKeyLookup } from "./signer";
import { syncDir } from "./signer";
import { verifyCheckpoint } from "./checkpoint-jws";

/**
 * One signed tree head as a witness holds it: one JSON line of a witness log. `jws` is the
 * checkpoint's JWS, which signs {sequence: tree_size, hash, timestamp, count, root}; the other
 * fields repeat what it signs, for people and tools that read the file. `consistency` is the RFC
 * 9162 proof that this tree extends the one of the line before (null on a log's first line), so
 * that a witness log shows by itself that the trail only ever grew.
 */
export interface WitnessedHead {
  chron_witness: 1;
  tree_size: number;
  root: string;
  hash: string;
  timestamp: string;
  kid: string;
  jws: string;
  consistency: { from_size: number; from_root: string; proof: string[] } | null;
}

export const WITNESS_FILE = "chron-witness.log";

const HEX64 = /^[0-9a-f]{64}$/;

/** Why a line is not a well-formed witnessed head; null when it is. Signatures are checked apart (checkHead). */
export function malformedHead(value: unknown): string | null {
  const h = value as Partial<WitnessedHead> | null;
  if (!h || typeof h !== "object" || Array.isArray(h) || h.chron_witness !== 1) return "not a witnessed tree head";
  if (typeof h.tree_size !== "number" || !Number.isSafeInteger(h.tree_size) || h.tree_size < 1) return "tree_size is not a record number";
  if (typeof h.root !== "string" || !HEX64.test(h.root) || typeof h.hash !== "string" || !HEX64.test(h.hash)) return "root and hash must be 64 hex digits";
  if (typeof h.jws !== "string" || typeof h.kid !== "string" || typeof h.timestamp !== "string") return "jws, kid and timestamp are required";
  const c = h.consistency;
  if (c !== null && (typeof c !== "object" || typeof c.from_size !== "number" || typeof c.from_root !== "string" || !Array.isArray(c.proof))) return "consistency is malformed";
  return null;
}

/** Checks a witnessed head's signature and that its fields are what it signs; returns why not, or null. */
export function checkHead(head: WitnessedHead, keys: ChronKeyLookup): string | null {
  const malformed = malformedHead(head);
  if (malformed) return malformed;
  try {
    const claims = verifyCheckpoint(head.jws, keys);
    if (claims.sequence !== head.tree_size || claims.hash !== head.hash || claims.root !== head.root || claims.timestamp !== head.timestamp) {
      return "its fields disagree with what its signature signs";
    }
  } catch (err) {
    return (err as Error).message;
  }
  return null;
}

/** One line of a witness log as read: the head, or why the line is not one. */
export interface WitnessLine {
  line: number;
  head: WitnessedHead | null;
  problem: string | null;
}

/**
 * Reads a witness log line by line, and checks each head (signature, fields) and that it extends
 * the one before (sizes grow, and the consistency proof holds). Yields every line with its
 * problem, if any; a bad line does not stop the reading, and the next is checked against the
 * last good head. Without keys (a witness holds none of the CLAIIM it witnesses), a head's shape
 * is checked, not its signature.
 */
export async function* readWitnessLog(file: string, keys: ChronKeyLookup | null): AsyncGenerator<WitnessLine> {
  let line = 0;
  let previous: WitnessedHead | null = null;
  for await (const text of readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity })) {
    line += 1;
    if (text.trim() === "") continue;
    let head: WitnessedHead;
    try {
      head = JSON.parse(text) as WitnessedHead;
    } catch {
      yield { line, head: null, problem: "not JSON" };
      continue;
    }
    const problem = (keys ? checkHead(head, keys) : malformedHead(head)) ?? extendsHead(previous, head);
    yield { line, head: problem && malformedHead(head) ? null : head, problem };
    if (!problem) previous = head;
  }
}

/**
 * The good heads of a witness log, in order, one at a time, for walking them in step with records
 * (both ascend). Bad lines go to `bad`, and are passed over.
 */
export class WitnessHeads {
  /** Good heads read so far, and the last of them. */
  heads = 0;
  last: WitnessedHead | null = null;
  private pending: WitnessedHead | null = null;
  private done = false;

  constructor(
    private readonly lines: AsyncIterator<WitnessLine>,
    private readonly bad: (line: WitnessLine) => void,
  ) {}

  /** Heads of tree sizes up to `size`, in order, consumed. */
  async *upTo(size: number): AsyncGenerator<WitnessedHead> {
    for (;;) {
      const head = await this.peek();
      if (!head || head.tree_size > size) return;
      this.pending = null;
      yield head;
    }
  }

  /** The first head beyond `size`, if any (those up to it are passed over). */
  async after(size: number): Promise<WitnessedHead | null> {
    for await (const _ of this.upTo(size));
    return this.peek();
  }

  /** Reads what is left, so that every line of the log is checked. */
  async rest(): Promise<void> {
    for await (const _ of this.upTo(Number.MAX_SAFE_INTEGER));
  }

  private async peek(): Promise<WitnessedHead | null> {
    while (!this.pending && !this.done) {
      const next = await this.lines.next();
      if (next.done) {
        this.done = true;
        break;
      }
      if (next.value.problem || !next.value.head) {
        this.bad(next.value);
        continue;
      }
      this.heads += 1;
      this.pending = next.value.head;
      this.last = next.value.head;
    }
    return this.pending;
  }
}

/** Why `head` does not extend `previous` (the last good head before it in a log); null when it does. */
export function extendsHead(previous: WitnessedHead | null, head: WitnessedHead): string | null {
  if (!previous) return null;
  if (head.tree_size <= previous.tree_size) return `its tree (${head.tree_size}) is not larger than the one before it (${previous.tree_size})`;
  const c = head.consistency;
  if (!c || c.from_size !== previous.tree_size || c.from_root !== previous.root) return `it carries no consistency proof from the head before it (${previous.tree_size})`;
  if (!verifyConsistency(c.from_size, head.tree_size, c.proof, c.from_root, head.root)) return `its consistency proof does not show that it extends the head before it (${previous.tree_size})`;
  return null;
}

/**
 * The local witness: signed tree heads appended, one JSON line each, and made durable (fsync)
 * before the next, to a file outside the database (CLAIIM_WITNESS_DIR). Whoever can only change
 * the database cannot change it; verification and start-up hold the chain against it.
 */
export class WitnessLog {
  readonly file: string;
  private handle: fs.promises.FileHandle | null = null;

  constructor(dir: string, name = WITNESS_FILE) {
    this.file = path.join(dir, name);
  }

  /**
   * Opens the log for appending, and returns its last line. A line a crash left half-written (no
   * newline at the end of the file) is cut off first: it was never acknowledged.
   */
  async open(logger: Logger): Promise<WitnessedHead | null> {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const existed = fs.existsSync(this.file);
    this.handle = await fs.promises.open(this.file, "a+", 0o644);
    if (!existed) syncDir(path.dirname(this.file));
    const { size } = await this.handle.stat();
    if (size === 0) return null;
    const tail = Buffer.alloc(Math.min(size, 1 << 16));
    await this.handle.read(tail, 0, tail.length, size - tail.length);
    const end = tail.lastIndexOf(0x0a);
    if (end !== tail.length - 1) {
      const keep = size - tail.length + end + 1;
      logger.warn("witness log: cutting a line left half-written", { file: this.file, bytes: size - keep });
      await this.handle.truncate(keep);
      await this.handle.sync();
    }
    const lines = tail.subarray(0, end + 1).toString("utf8").trimEnd().split("\n");
    const last = lines[lines.length - 1];
    try {
      return last && !malformedHead(JSON.parse(last)) ? (JSON.parse(last) as WitnessedHead) : null;
    } catch {
      return null;
    }
  }

  async append(head: WitnessedHead): Promise<void> {
    if (!this.handle) throw new Error("the witness log is not open");
    await this.handle.appendFile(`${JSON.stringify(head)}\n`);
    await this.handle.sync();
  }

  async close(): Promise<void> {
    await this.handle?.close();
    this.handle = null;
  }
}

