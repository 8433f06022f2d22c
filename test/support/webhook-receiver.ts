import http from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
  /** What the receiver answered (a status), or "hang" when it never answered. */
  answered: number | "hang";
}

/**
 * A real HTTP receiver of webhooks on loopback, as a chat bridge would run one. It answers each
 * request with the next planned status (then 204), or holds it without answering ("hang").
 */
export class WebhookReceiver {
  received: Received[] = [];
  /** Requests it holds open right now. */
  holding = 0;
  plan: (number | "hang")[] = [];
  private waiters: (() => void)[] = [];
  private readonly held = new Set<http.ServerResponse>();
  private server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const answered = this.plan.shift() ?? 204;
      this.received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), answered });
      for (const w of this.waiters.splice(0)) w();
      if (answered === "hang") {
        this.holding += 1;
        this.held.add(res);
        res.on("close", () => {
          this.holding -= 1;
          this.held.delete(res);
        });
        return;
      }
      res.writeHead(answered).end();
    });
  });
  url = "";

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks/claiim`;
  }

  /** Resolves once `n` requests have arrived in all (fails after `ms`). */
  async count(n: number, ms = 15000): Promise<Received[]> {
    const deadline = Date.now() + ms;
    while (this.received.length < n) {
      if (Date.now() > deadline) throw new Error(`the receiver got ${this.received.length} requests, not ${n}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
    return this.received;
  }

  stop(): Promise<void> {
    for (const res of this.held) res.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}
