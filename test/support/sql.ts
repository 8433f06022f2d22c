import type { Database } from "../../src/db/database";

/** Runs raw SQL against the server's own database, as an attacker or a broken disk would. */
export async function sql(db: Database, text: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  if (db.kind === "sqlite") {
    const stmt = db.sqlite.prepare(text.replace(/\$\d+/g, "?"));
    return stmt.reader ? (stmt.all(...params) as Record<string, unknown>[]) : (stmt.run(...params), []);
  }
  return (await db.pool.query(text, params)).rows;
}

export async function failChronInserts(db: Database): Promise<void> {
  if (db.kind === "sqlite") {
    db.sqlite.exec("CREATE TRIGGER chron_fail BEFORE INSERT ON chron_records BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END;");
  } else {
    await db.pool.query(`CREATE FUNCTION chron_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'simulated disk failure'; END $$;
      CREATE TRIGGER chron_fail BEFORE INSERT ON chron_records FOR EACH ROW EXECUTE FUNCTION chron_fail();`);
  }
}

export async function restoreChronInserts(db: Database): Promise<void> {
  if (db.kind === "sqlite") db.sqlite.exec("DROP TRIGGER chron_fail");
  else await db.pool.query("DROP TRIGGER chron_fail ON chron_records; DROP FUNCTION chron_fail();");
}
