import fs from "node:fs";
import path from "node:path";
import BetterSqlite3 from "better-sqlite3";
import pg from "pg";
import { PrismaBetterSQLite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient as SqlitePrismaClient, type Prisma as SqlitePrismaNamespace } from "../generated/prisma-sqlite/client";
import { PrismaClient as PostgresPrismaClient } from "../generated/prisma-postgresql/client";

export type DatabaseKind = "sqlite" | "postgresql";

/**
 * The database's time in milliseconds, as an SQL expression: on PostgreSQL the one clock that
 * replicas on several machines share; on SQLite the machine's, which all its processes share.
 */
export const NOW_MS_SQL: Record<DatabaseKind, string> = {
  postgresql: "(extract(epoch from statement_timestamp()) * 1000)::bigint",
  sqlite: "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
};

/**
 * The management-plane client. Both generated clients have the same model API; the SQLite one
 * stands for both in types.
 */
export type Prisma = SqlitePrismaClient;

/** The client an interactive transaction hands to its callback. */
export type Tx = SqlitePrismaNamespace.TransactionClient;

/**
 * One database, reached two ways: the Prisma model API for the management plane, and the raw
 * driver for Chron's batched appends and streamed reads, which must stay off the model API.
 */
export type Database =
  | { kind: "sqlite"; prisma: Prisma; sqlite: BetterSqlite3.Database; close(): Promise<void> }
  | { kind: "postgresql"; prisma: Prisma; pool: pg.Pool; close(): Promise<void> };

export function sqlitePath(url: string): string {
  return url.replace(/^file:/, "").replace(/\?.*$/, "");
}

/**
 * Opens the SQLite driver connection with durability settings that must hold per connection.
 * WARNING: busy_timeout stays 0, here and on Prisma's connection: better-sqlite3 is synchronous,
 * so waiting inside SQLite would stop the whole process (every request, every timer) for as long
 * as another connection holds the lock, and the holder may be this process's own open Prisma
 * transaction, which cannot make progress meanwhile. Writes retry SQLITE_BUSY asynchronously
 * instead (whenFree).
 */
export function openSqliteDriver(file: string): BetterSqlite3.Database {
  const db = new BetterSqlite3(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 0");
  const synchronous = db.pragma("synchronous", { simple: true });
  if (synchronous !== 2) throw new Error(`SQLite synchronous is ${synchronous}, expected 2 (FULL)`);
  return db;
}

/** SQLITE_BUSY (another connection holds the write lock), from the driver or through Prisma's adapter. */
export function isSqliteBusy(err: unknown): boolean {
  const e = err as { code?: unknown; meta?: { driverAdapterError?: { cause?: { originalCode?: unknown } } } } | null;
  return String(e?.code).startsWith("SQLITE_BUSY") || String(e?.meta?.driverAdapterError?.cause?.originalCode).startsWith("SQLITE_BUSY");
}

/** How long a SQLite write waits for the lock, in steps of BUSY_RETRY_MS, before its error stands. */
const BUSY_DEADLINE_MS = 5000;
const BUSY_RETRY_MS = 2;

/**
 * A SQLite write, tried again every 2 ms while another connection holds the write lock, for at
 * most BUSY_DEADLINE_MS: every connection's busy_timeout is 0 (see openSqliteDriver), so the wait
 * is here, between event loop turns, never inside SQLite. `write` must be safe to run again after
 * SQLITE_BUSY: a statement on its own, or a transaction that failed before it took the lock.
 */
export async function whenFree<T>(write: () => T | Promise<T>, retry: (err: unknown) => boolean = isSqliteBusy): Promise<T> {
  const deadline = Date.now() + BUSY_DEADLINE_MS;
  for (;;) {
    try {
      return await write();
    } catch (err) {
      if (!retry(err) || Date.now() >= deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, BUSY_RETRY_MS));
    }
  }
}

/**
 * `onError` hears of failures of idle PostgreSQL connections (a server restart, a dropped
 * database). Without a listener, node-postgres would let such an error end the process.
 */
export async function openDatabase(kind: DatabaseKind, url: string, onError: (err: Error) => void = () => undefined): Promise<Database> {
  if (kind === "sqlite") {
    const file = sqlitePath(url);
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    // The driver connection opens first, so that WAL mode is on before Prisma's connection opens.
    const sqlite = openSqliteDriver(file);
    const prisma = new SqlitePrismaClient({ adapter: new PrismaBetterSQLite3({ url: `file:${file}`, timeout: 0 }) });
    // Prisma's adapter opens a connection of its own, with SQLite's defaults (NORMAL in WAL mode).
    await prisma.$executeRawUnsafe("PRAGMA synchronous = FULL");
    await prisma.$executeRawUnsafe("PRAGMA foreign_keys = ON");
    const [{ synchronous }] = await prisma.$queryRawUnsafe<{ synchronous: bigint | number }[]>("PRAGMA synchronous");
    if (Number(synchronous) !== 2) throw new Error(`SQLite synchronous is ${synchronous} on Prisma's connection, expected 2 (FULL)`);
    return {
      kind,
      prisma,
      sqlite,
      async close() {
        await prisma.$disconnect();
        sqlite.close();
      },
    };
  }
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  pool.on("error", onError);
  const prisma = new PostgresPrismaClient({ adapter: new PrismaPg(pool) }) as unknown as Prisma;
  return {
    kind,
    prisma,
    pool,
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}

/** True when the database answers a trivial query. */
export async function databaseAnswers(db: Database): Promise<boolean> {
  try {
    if (db.kind === "sqlite") db.sqlite.prepare("SELECT 1").get();
    else await db.pool.query("SELECT 1");
    return true;
  } catch {
    return false;
  }
}
