import { Webhook } from "standardwebhooks";
import type { Recorder } from "../chron/chron-store";
import type { Logger } from "../lib/logger";
import type { ApprovalStore } from "./approval-store";
import type { Approval, WebhookDelivery } from "./model";
import { approvalEvent, webhookPayload, webhookView, type Directory } from "./views";
import { SYSTEM } from "../shared/principal";

export interface WebhookSettings {
  url: string;
  /** Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 random bytes. */
  secret: string;
  /** Waits before the 2nd, 3rd, … attempt; after the last, delivery has failed. */
  retrySeconds: number[];
  timeoutMs: number;
  /** Deliveries in flight at once; the others wait their turn. */
  concurrency: number;
}

type Outcome = { ok: true; status: number } | { ok: false; error: string; status?: number; abandon?: boolean };

/** Why a fetch failed, in a line: the cause's code (ECONNREFUSED) when there is one. */
function describe(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e.name === "TimeoutError") return "no answer before the timeout";
  return e.cause ? `${e.message}: ${e.cause.code ?? e.cause.message}` : e.message;
}

/**
 * Tells a human that an approval waits for them: POSTs approval.requested to
 * CLAIIM_APPROVAL_WEBHOOK_URL, signed as Standard Webhooks specify (webhook-id, webhook-timestamp,
 * webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">). The id is the same for every
 * attempt, so the receiver can drop duplicates.
 *
 * It runs off the request path, on timers: a decision never waits for it. Each attempt's outcome is
 * recorded in Chron (approval.webhook_delivered, approval.webhook_failed) together with the
 * delivery state of the approval, which the approval's view shows. A failed attempt is retried
 * after the configured waits, as long as the approval still waits for a human; delivery state is
 * stored, so a restart picks up where it stopped.
 */
export class WebhookNotifier {
  private readonly signer: Webhook;
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly queue: string[] = [];
  private inFlight = 0;
  private stopped = false;
  /** Ends the attempts in flight when CLAIIM stops; they are made again after a restart. */
  private readonly stopping = new AbortController();
  private readonly idle = new Set<() => void>();

  constructor(
    private readonly settings: WebhookSettings,
    private readonly deps: { store: ApprovalStore; record: Recorder; directory: Directory; logger: Logger; publicUrl: string; userAgent: string },
    /** The approval as it stands now, in memory. */
    private readonly current: (id: string) => Approval | undefined,
  ) {
    this.signer = new Webhook(settings.secret);
  }

  /** Schedules the next attempt for an approval whose delivery is pending (new, or resumed at start). */
  schedule(a: Approval): void {
    if (this.stopped || a.webhook.state !== "pending") return;
    clearTimeout(this.timers.get(a.id));
    const delay = Math.max(0, (a.webhook.nextAttemptAt?.getTime() ?? 0) - Date.now());
    const timer = setTimeout(() => {
      this.timers.delete(a.id);
      this.queue.push(a.id);
      this.pump();
    }, Math.min(delay, 2 ** 31 - 1));
    timer.unref();
    this.timers.set(a.id, timer);
  }

  stop(): void {
    this.stopped = true;
    this.stopping.abort();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.queue.length = 0;
  }

  /** Resolves when no attempt is queued or in flight (for an orderly shutdown). */
  settled(): Promise<void> {
    if (this.inFlight === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.add(resolve));
  }

  private pump(): void {
    while (!this.stopped && this.inFlight < this.settings.concurrency && this.queue.length) {
      const id = this.queue.shift()!;
      this.inFlight += 1;
      void this.attempt(id)
        .catch((err: Error) => this.deps.logger.error("approval webhook attempt failed unexpectedly", { approval_id: id, error: err.message }))
        .finally(() => {
          this.inFlight -= 1;
          this.pump();
          if (this.inFlight === 0 && this.queue.length === 0) for (const done of [...this.idle]) (this.idle.delete(done), done());
        });
    }
  }

  private async attempt(id: string): Promise<void> {
    const a = this.current(id);
    if (!a || a.webhook.state !== "pending") return;
    const attempt = a.webhook.attempts + 1;
    // Nobody needs asking once the approval is decided or expired: the delivery is given up, and that is recorded.
    const outcome: Outcome =
      a.status === "pending" ? await this.send(a) : { ok: false, error: `the approval was ${a.status} before the webhook was delivered`, abandon: true };
    if (this.stopped) return;
    const now = new Date();
    const final = outcome.ok || outcome.abandon || attempt > this.settings.retrySeconds.length;
    const next: WebhookDelivery = outcome.ok
      ? { state: "delivered", attempts: attempt, lastAttemptAt: now, nextAttemptAt: null, lastError: null, deliveredAt: now }
      : {
          state: final ? "failed" : "pending",
          attempts: attempt,
          lastAttemptAt: now,
          nextAttemptAt: final ? null : new Date(now.getTime() + this.settings.retrySeconds[attempt - 1] * 1000),
          lastError: outcome.error,
          deliveredAt: null,
        };
    const event = approvalEvent(
      this.deps.directory,
      a,
      outcome.ok ? "approval.webhook_delivered" : "approval.webhook_failed",
      SYSTEM,
      { webhook: webhookView(a) },
      {
        webhook: webhookView({ ...a, webhook: next }),
        attempt,
        status_code: outcome.status ?? null,
        ...(outcome.ok ? {} : { error: outcome.error, final }),
      },
    );
    try {
      await this.deps.record([event], (tx) => this.deps.store.saveWebhook(a.id, next, tx));
    } catch (err) {
      // Chron could not record the outcome: the attempt is not counted, and is made again later.
      this.deps.logger.error("approval webhook outcome not recorded; will try again", { approval_id: a.id, error: (err as Error).message });
      a.webhook = { ...a.webhook, nextAttemptAt: new Date(now.getTime() + (this.settings.retrySeconds[0] ?? 5) * 1000) };
      this.schedule(a);
      return;
    }
    a.webhook = next;
    if (outcome.ok) this.deps.logger.info("approval webhook delivered", { approval_id: a.id, attempt, status: outcome.status });
    else this.deps.logger.warn("approval webhook attempt failed", { approval_id: a.id, attempt, error: outcome.error, final });
    this.schedule(a);
  }

  private async send(a: Approval): Promise<Outcome> {
    const body = JSON.stringify(webhookPayload(a, this.deps.directory, this.deps.publicUrl));
    const id = `msg_${a.id}`;
    const timestamp = new Date();
    try {
      const res = await fetch(this.settings.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": this.deps.userAgent,
          "webhook-id": id,
          "webhook-timestamp": String(Math.floor(timestamp.getTime() / 1000)),
          "webhook-signature": this.signer.sign(id, timestamp, body),
        },
        body,
        // A redirect is not a delivery: the receiver is the configured URL, nothing else.
        redirect: "manual",
        signal: AbortSignal.any([AbortSignal.timeout(this.settings.timeoutMs), this.stopping.signal]),
      });
      await res.body?.cancel().catch(() => undefined);
      return res.status >= 200 && res.status < 300 ? { ok: true, status: res.status } : { ok: false, status: res.status, error: `the receiver answered HTTP ${res.status}` };
    } catch (err) {
      return { ok: false, error: describe(err) };
    }
  }
}
