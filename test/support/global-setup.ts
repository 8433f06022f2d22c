import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";

const ROOT = path.resolve(__dirname, "../..");

function migrate(url: string): void {
  execFileSync(path.join(ROOT, "node_modules/.bin/prisma"), ["migrate", "deploy"], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: url },
    stdio: "pipe",
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * Migrates one template database per provider with the real `prisma migrate deploy`; each test
 * file then gets a fresh copy (a file copy on SQLite, CREATE DATABASE … TEMPLATE on PostgreSQL).
 */
export default async function globalSetup(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "claiim-test-"));
  const sqliteTemplate = path.join(dir, "template.db");
  migrate(`file:${sqliteTemplate}`);
  process.env.CLAIIM_TEST_SQLITE_TEMPLATE = sqliteTemplate;
  process.env.CLAIIM_TEST_TMP = dir;

  const pgUrl = process.env.CLAIIM_TEST_PG_URL;
  if (!pgUrl) {
    if (process.env.CLAIIM_TEST_SKIP_PG !== "1") {
      throw new Error("CLAIIM_TEST_PG_URL is not set: run the tests with `make test`, which starts PostgreSQL, or set CLAIIM_TEST_SKIP_PG=1");
    }
    return;
  }
  const template = `claiim_tpl_${process.pid}`;
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  try {
    // Databases left behind by runs that died. WARNING: only those whose process is gone: several
    // test runs (worktrees, a benchmark) may share one PostgreSQL, and each names its databases
    // after the pid of the jest process that made them.
    const { rows } = await admin.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname ~ '^claiim_(t|tpl)_[0-9a-f_]+$'");
    for (const { datname } of rows) {
      const pid = Number(datname.split("_").pop());
      if (Number.isInteger(pid) && processAlive(pid)) continue;
      await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
    await admin.query(`CREATE DATABASE "${template}"`);
  } finally {
    await admin.end();
  }
  migrate(withDatabase(pgUrl, template));
  process.env.CLAIIM_TEST_PG_TEMPLATE = template;
}
