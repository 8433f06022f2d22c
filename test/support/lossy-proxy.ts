import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export type Loss = "503" | "reset";

/**
 * A reverse proxy in front of a real CLAIIM that can lose answers: the request reaches CLAIIM
 * (and is decided and recorded), but the client gets a 503 or a reset connection instead of the
 * answer, as behind a load balancer that timed out. This is the case Idempotency-Key is for.
 */
export interface LossyProxy {
  url: string;
  /** Loses the answers of the next `n` POST /v1/decisions. */
  loseNext(n: number, how: Loss): void;
  /** POST /v1/decisions requests seen, and their Idempotency-Key headers. */
  decisionKeys: string[];
  /** While true, every request gets a 503 and never reaches the target: the target is down. */
  down: boolean;
  /** Requests refused while down. */
  refused: number;
  close(): Promise<void>;
}

export async function startLossyProxy(target: string): Promise<LossyProxy> {
  const upstream = new URL(target);
  let losses: Loss[] = [];
  const decisionKeys: string[] = [];
  const server: Server = createServer((req, res) => {
    if (proxy.down) {
      proxy.refused += 1;
      req.resume();
      res.writeHead(503, { "Content-Type": "application/problem+json" }).end(JSON.stringify({ status: 503, code: "upstream_down" }));
      return;
    }
    const isDecision = req.method === "POST" && req.url === "/v1/decisions";
    if (isDecision) decisionKeys.push(String(req.headers["idempotency-key"] ?? ""));
    const loss = isDecision ? losses.shift() : undefined;
    const out = httpRequest({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: { ...req.headers, host: upstream.host } }, (answer) => {
      if (!loss) {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        return;
      }
      answer.resume();
      answer.on("end", () => {
        if (loss === "reset") req.socket.destroy();
        else res.writeHead(503, { "Content-Type": "application/problem+json" }).end(JSON.stringify({ status: 503, code: "upstream_timeout" }));
      });
    });
    out.on("error", () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const proxy: LossyProxy = {
    url: `http://127.0.0.1:${port}`,
    down: false,
    refused: 0,
    loseNext(n, how) {
      losses = Array(n).fill(how);
    },
    decisionKeys,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return proxy;
}
