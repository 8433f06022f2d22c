import type { WitnessedHead } from "./witness";
import type { Logger } from "../lib/logger";

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
