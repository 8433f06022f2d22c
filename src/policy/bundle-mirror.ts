import fs from "node:fs/promises";
import path from "node:path";
import type { Recorder } from "../chron/chron-store";
import { newEvent } from "../chron/record";
import type { Logger } from "../lib/logger";
import type { Actor } from "../shared/principal";
import { fileSha256 } from "./bundle";
import type { PolicyStore, StoredBundle } from "./policy-store";

/**
 * The copies of each version's bundle under bundles/, for OPA tooling (`opa build`, sidecars).
 * CLAIIM itself runs the verified copy from the database; a copy on disk that differs from it is
 * a tampered file, moved aside and reported.
 */
export class BundleMirror {
  constructor(
    private readonly bundleDir: string,
    private readonly store: PolicyStore,
    private readonly record: Recorder,
    private readonly logger: Logger,
  ) {}

  /**
   * The copy under bundles/ is for OPA tooling; CLAIIM runs the verified copy from the database.
   * A copy that differs from it is moved aside (kept for inspection), replaced, and reported.
   */
  async check(stored: StoredBundle, actor: Actor): Promise<void> {
    const file = path.join(this.bundleDir, `${stored.version}.tar.gz`);
    const onDisk = await fs.readFile(file).catch(() => null);
    if (onDisk?.equals(stored.bundle)) return;
    if (onDisk) {
      const kept = `${file}.rejected-${new Date().toISOString().replace(/[:.]/g, "-")}`;
      await fs.rename(file, kept);
      const message = `bundle file ${path.basename(file)} differed from the verified copy of version ${stored.version}; kept as ${path.basename(kept)} and replaced`;
      await this.record(
        [newEvent({ type: "policy.bundle_file_replaced", actor, subject: { type: "policy", id: String(stored.version), name: stored.revision }, reason: message, before: { file_sha256: fileSha256(onDisk) }, after: { file_sha256: stored.fileSha256 } })],
        (tx) => this.store.setError(message, new Date(), tx),
      );
      this.logger.error("tampered bundle file replaced", { version: stored.version, kept });
    }
    await this.write(stored.version, stored.bundle);
  }

  async write(version: number, bundle: Buffer): Promise<void> {
    try {
      await fs.mkdir(this.bundleDir, { recursive: true });
      await fs.writeFile(path.join(this.bundleDir, `${version}.tar.gz`), bundle);
    } catch (err) {
      // The database holds the authoritative copy; the file is a convenience for OPA tooling.
      this.logger.warn("could not write bundle file", { version, error: (err as Error).message });
    }
  }
}
