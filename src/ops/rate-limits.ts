// Rate limits on the token endpoint and on failed authentication (rate-limiter-flexible, in this
// process's memory). A refusal is a 429 problem with Retry-After, counted in the metrics and never
// recorded in Chron one by one: a flood of refusals must not become a flood of records.
import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import { RateLimitedError } from "../lib/errors";

export interface RateLimitSettings {
  /** The window every limit counts over, in seconds. */
  windowSeconds: number;
  /** Token requests per OAuth client per window (0: no limit). */
  tokenPerClient: number;
  /** Token requests per client address per window (0: no limit). */
  tokenPerAddress: number;
  /** Failed authentications (401) per client address per window; past it, that address is refused until the window ends (0: no limit). */
  failuresPerAddress: number;
  /** Failed authentications per OAuth client id per window (0: no limit). */
  failuresPerClient: number;
}

export type LimitName = "token_per_client" | "token_per_address" | "failures_per_address" | "failures_per_client";

function limiter(points: number, windowSeconds: number): RateLimiterMemory | null {
  return points > 0 ? new RateLimiterMemory({ points, duration: windowSeconds }) : null;
}

export class RateLimits {
  private readonly tokenPerClient: RateLimiterMemory | null;
  private readonly tokenPerAddress: RateLimiterMemory | null;
  private readonly failuresPerAddress: RateLimiterMemory | null;
  private readonly failuresPerClient: RateLimiterMemory | null;

  constructor(
    private readonly settings: RateLimitSettings,
    /** Told of every refusal (the metrics count them). */
    private readonly refused: (limit: LimitName) => void = () => undefined,
  ) {
    this.tokenPerClient = limiter(settings.tokenPerClient, settings.windowSeconds);
    this.tokenPerAddress = limiter(settings.tokenPerAddress, settings.windowSeconds);
    this.failuresPerAddress = limiter(settings.failuresPerAddress, settings.windowSeconds);
    this.failuresPerClient = limiter(settings.failuresPerClient, settings.windowSeconds);
  }

  /**
   * Before a request that presents a credential is authenticated: an address past its failures is
   * refused without its credential being looked at, so guessing costs a window per few tries.
   */
  async admitCredential(address: string): Promise<void> {
    await this.exhausted(this.failuresPerAddress, address, this.settings.failuresPerAddress, "failures_per_address", "too many failed authentications from this address");
  }

  /** Before a token request: its address and client (when it names one) each take one request of their window. */
  async admitToken(address: string, clientId: string | null): Promise<void> {
    if (clientId !== null) {
      await this.exhausted(this.failuresPerClient, clientId, this.settings.failuresPerClient, "failures_per_client", "too many failed authentications of this client");
    }
    await this.take(this.tokenPerAddress, address, "token_per_address", "too many token requests from this address");
    if (clientId !== null) await this.take(this.tokenPerClient, clientId, "token_per_client", "too many token requests for this client");
  }

  /** After a request was refused for its credential (401). */
  failed(address: string, clientId: string | null): void {
    // Counting never fails a request: the memory store cannot fail, and a lost count is only lenient.
    void this.failuresPerAddress?.penalty(address).catch(() => undefined);
    if (clientId !== null) void this.failuresPerClient?.penalty(clientId).catch(() => undefined);
  }

  private async exhausted(l: RateLimiterMemory | null, key: string, points: number, name: LimitName, why: string): Promise<void> {
    const state = l ? await l.get(key) : null;
    if (state && state.consumedPoints >= points) this.refuse(name, why, state.msBeforeNext);
  }

  private async take(l: RateLimiterMemory | null, key: string, name: LimitName, why: string): Promise<void> {
    if (!l) return;
    try {
      await l.consume(key);
    } catch (res) {
      if (!(res instanceof RateLimiterRes)) throw res;
      this.refuse(name, why, res.msBeforeNext);
    }
  }

  private refuse(name: LimitName, why: string, msBeforeNext: number): never {
    this.refused(name);
    const seconds = Math.max(1, Math.ceil(msBeforeNext / 1000));
    throw new RateLimitedError("rate_limited", `${why}; try again in ${seconds} s`, seconds);
  }
}
