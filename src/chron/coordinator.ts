import { holderName, Lease, type LeaseStore } from "../db/lease";
import type { Logger } from "../lib/logger";
import type { Checkpointer } from "./checkpoints";

/**
 * Which process signs the periodic tree heads of the chain every process writes.
 *
 * WARNING: one process at a time signs them: the holder of the database's `chron-coordinator`
 * lease (see Lease), which a process takes over when its holder dies. The others still sign on
 * demand (exports, retention). Without leases (route tests) this process is the only one, and
 * coordinates from the start (Checkpointer's default).
 */
export class ChronCoordinator {
  private readonly lease: Lease | null;

  constructor(
    leases: LeaseStore | undefined,
    private readonly checkpointer: Checkpointer,
    leaseMs: number,
    logger: Logger,
  ) {
    const lease: Lease | null = leases
      ? new Lease(leases, "chron-coordinator", holderName(), leaseMs, logger, (held) => checkpointer.coordinate(held, () => lease!.holds()))
      : null;
    this.lease = lease;
  }

  /** Not coordinating until the lease is held; then the lease's first claim. */
  async start(): Promise<void> {
    if (!this.lease) return;
    await this.checkpointer.coordinate(false);
    await this.lease.start();
  }

  /** Gives the lease up, so that another process takes over at its next claim (after the checkpointer's last head). */
  async stop(): Promise<void> {
    await this.lease?.stop();
  }
}
