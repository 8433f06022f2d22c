import { isUniqueViolation } from "../db/duplicate";
import { whenFree, type Prisma, type Tx } from "../db/database";
import { ConflictError } from "../lib/errors";
import type { BundleSummary, PolicyState, PolicyStore, ShadowState, StoredBundle } from "./policy-store";

const STATE = "claiim";

export class PrismaPolicyStore implements PolicyStore {
  constructor(private readonly prisma: Prisma) {}

  async latestVersion(): Promise<number> {
    const r = await this.prisma.policyBundle.aggregate({ _max: { version: true } });
    return r._max.version ?? 0;
  }

  async insert(b: StoredBundle, tx: Tx): Promise<void> {
    try {
      await tx.policyBundle.create({
        data: { ...b, bundle: new Uint8Array(b.bundle), sources: JSON.stringify(b.sources) },
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError("policy_version_taken", `policy version ${b.version} was published concurrently; publish again`);
      throw err;
    }
  }

  async get(version: number): Promise<StoredBundle | null> {
    const row = await this.prisma.policyBundle.findUnique({ where: { version } });
    if (!row) return null;
    return { ...row, bundle: Buffer.from(row.bundle), sources: JSON.parse(row.sources) as Record<string, string> };
  }

  async list(): Promise<BundleSummary[]> {
    return this.prisma.policyBundle.findMany({
      orderBy: { version: "asc" },
      select: { version: true, parent: true, revision: true, digest: true, fileSha256: true, message: true, createdBy: true, createdAt: true },
    });
  }

  async state(): Promise<PolicyState> {
    const row = await this.prisma.policyState.findUnique({ where: { name: STATE } });
    return {
      activeVersion: row?.activeVersion ?? null,
      activatedAt: row?.activatedAt ?? null,
      activatedBy: row?.activatedBy ?? null,
      lastError: row?.lastError ?? null,
      lastErrorAt: row?.lastErrorAt ?? null,
      shadow: row?.shadowVersion != null && row.shadowSince && row.shadowSetBy ? { version: row.shadowVersion, since: row.shadowSince, by: row.shadowSetBy } : null,
      shadowTrips: row?.shadowVersion != null ? row.shadowTrips : 0,
    };
  }

  async setActive(version: number, by: string, at: Date, tx: Tx): Promise<void> {
    const data = { activeVersion: version, activatedAt: at, activatedBy: by };
    await tx.policyState.upsert({ where: { name: STATE }, create: { name: STATE, ...data }, update: data });
  }

  async setShadow(shadow: ShadowState | null, tx: Tx): Promise<void> {
    const data = { shadowVersion: shadow?.version ?? null, shadowSince: shadow?.since ?? null, shadowSetBy: shadow?.by ?? null, shadowTrips: 0 };
    await tx.policyState.upsert({ where: { name: STATE }, create: { name: STATE, ...data }, update: data });
  }

  async countShadowTrip(version: number): Promise<number | null> {
    // One UPDATE … RETURNING: the increment and the count it gives are one step on both databases.
    // On SQLite, while another process holds the write lock, it is tried again (whenFree); a statement on its own, it is safe to.
    const rows = await whenFree(() => this.prisma.$queryRaw<{ shadow_trips: number | bigint }[]>`UPDATE policy_state SET shadow_trips = shadow_trips + 1 WHERE name = ${STATE} AND shadow_version = ${version} RETURNING shadow_trips`);
    return rows[0] ? Number(rows[0].shadow_trips) : null;
  }

  async setError(message: string, at: Date, tx: Tx): Promise<void> {
    const data = { lastError: message, lastErrorAt: at };
    await tx.policyState.upsert({ where: { name: STATE }, create: { name: STATE, ...data }, update: data });
  }
}
