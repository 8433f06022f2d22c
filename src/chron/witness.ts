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
 * last good head.
 */
export async function* readWitnessLog(file: string, keys: ChronKeyLookup): AsyncGenerator<WitnessLine> {
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
    const problem = checkHead(head, keys) ?? extends_(previous, head);
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
function extends_(previous: WitnessedHead | null, head: WitnessedHead): string | null {
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

export interface RemoteWitnessSettings {
  url: string;
  /** Sent as `Authorization: Bearer <token>` (for a CLAIIM witness: an API key with the role witness). */
  token: string | null;
  /** Waits before each retry; the last one repeats for as long as the witness is unreachable. */
  retrySeconds: number[];
  timeoutSeconds: number;
}

export interface RemoteWitnessStatus {
  url: string;
  /** The largest tree the witness acknowledged since this process started. */
  acknowledged_size: number | null;
  /** The newest head waiting to be delivered. */
  pending_size: number | null;
  attempts: number;
  last_error: string | null;
}

/**
 * Delivers signed tree heads to a witness elsewhere (another CLAIIM, or any service that stores
 * them) by POST, off the decision path: a decision never waits for it. Only the newest head is
 * sent, with the consistency proof from the last one the witness acknowledged; a failed delivery
 * is retried after each wait, with whatever head is newest by then. A witness that answers 409
 * with the head it holds ({tree_size, root}) is sent the proof from there.
 */
export class RemoteWitness {
  private newest: WitnessedHead | null = null;
  private acked: { size: number; root: string } | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private wake: (() => void) | null = null;
  private readonly status: RemoteWitnessStatus;

  constructor(
    private readonly settings: RemoteWitnessSettings,
    /** The consistency proof from a tree the witness holds to `to`. */
    private readonly proofBetween: (from: { size: number; root: string }, to: WitnessedHead) => Promise<string[]>,
    private readonly logger: Logger,
    private readonly userAgent: string,
  ) {
    this.status = { url: settings.url, acknowledged_size: null, pending_size: null, attempts: 0, last_error: null };
  }

  offer(head: WitnessedHead): void {
    if (this.stopped || (this.newest && head.tree_size <= this.newest.tree_size)) return;
    this.newest = head;
    this.status.pending_size = head.tree_size;
    this.running ??= this.run().finally(() => (this.running = null));
  }

  state(): RemoteWitnessStatus {
    return { ...this.status };
  }

  /** Stops retrying; a delivery under way is given its timeout. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.running;
  }

  /** Settles when the newest head is delivered (or delivery stopped): for tests and shutdown. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped && this.newest && (!this.acked || this.newest.tree_size > this.acked.size)) {
      const head = this.newest;
      this.status.attempts += 1;
      try {
        const held = await this.deliver(head);
        if (held) {
          // The witness holds another tree than we thought: prove from its own, at once.
          if (held.size > head.tree_size) throw new Error(`the witness holds a larger tree (${held.size}) than this CLAIIM has signed (${head.tree_size})`);
          if (this.acked?.size === held.size && this.acked.root === held.root) throw new Error("the witness refused the head and its proof");
          this.acked = held;
          this.status.acknowledged_size = held.size;
          continue;
        }
        this.acked = { size: head.tree_size, root: head.root };
        this.status.acknowledged_size = head.tree_size;
        this.status.last_error = null;
        if (this.newest === head) this.status.pending_size = null;
        failures = 0;
      } catch (err) {
        this.status.last_error = (err as Error).message;
        const wait = this.settings.retrySeconds[Math.min(failures, this.settings.retrySeconds.length - 1)];
        failures += 1;
        this.logger.warn("witness delivery failed; retrying", { url: this.settings.url, tree_size: head.tree_size, error: (err as Error).message, retry_in_seconds: wait });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait * 1000);
          timer.unref();
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = null;
      }
    }
  }

  /** POSTs one head; null when acknowledged, or the head the witness says it holds (409). */
  private async deliver(head: WitnessedHead): Promise<{ size: number; root: string } | null> {
    const from = this.acked;
    const consistency = from ? { from_size: from.size, from_root: from.root, proof: head.consistency?.from_size === from.size ? head.consistency.proof : await this.proofBetween(from, head) } : null;
    const res = await fetch(this.settings.url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "User-Agent": this.userAgent, ...(this.settings.token ? { Authorization: `Bearer ${this.settings.token}` } : {}) },
      body: JSON.stringify({ ...head, consistency }),
      signal: AbortSignal.timeout(this.settings.timeoutSeconds * 1000),
      redirect: "manual",
    });
    const text = await res.text();
    if (res.ok) return null;
    if (res.status === 409) {
      const held = (() => {
        try {
          return JSON.parse(text) as { tree_size?: unknown; root?: unknown };
        } catch {
          return {};
        }
      })();
      if (typeof held.tree_size === "number" && typeof held.root === "string") return { size: held.tree_size, root: held.root };
    }
    throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
  }
}
