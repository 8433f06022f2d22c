import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import pg from "pg";
import { withDatabase } from "./global-setup";
import type { DatabaseKind } from "../../src/db/database";

/** The providers end-to-end tests run on: both, unless CLAIIM_TEST_SKIP_PG=1 said otherwise. */
export function databaseKinds(): DatabaseKind[] {
  return process.env.CLAIIM_TEST_PG_TEMPLATE ? ["sqlite", "postgresql"] : ["sqlite"];
}

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/** A freshly migrated, empty database of its own. */
export async function freshDatabase(kind: DatabaseKind, dir: string): Promise<TestDatabase> {
  if (kind === "sqlite") {
    const file = path.join(dir, "claiim.db");
    fs.copyFileSync(process.env.CLAIIM_TEST_SQLITE_TEMPLATE!, file);
    return { url: `file:${file}`, drop: async () => undefined };
  }
  const base = process.env.CLAIIM_TEST_PG_URL!;
  const name = `claiim_t_${randomBytes(6).toString("hex")}_${process.pid}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}" TEMPLATE "${process.env.CLAIIM_TEST_PG_TEMPLATE}"`);
  await admin.end();
  return {
    url: withDatabase(base, name),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await c.end();
    },
  };
}
