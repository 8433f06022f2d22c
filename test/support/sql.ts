import { whenFree, type Database } from "../../src/db/database";

/**
 * Runs raw SQL against the server's own database, as an attacker or a broken disk would. On
 * SQLite the statement waits its turn for the write lock as CLAIIM's own writes do (whenFree):
 * the connection's busy_timeout is 0, and the server's processes write at any moment.
 */
export async function sql(db: Database, text: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  if (db.kind === "sqlite") {
    const stmt = db.sqlite.prepare(text.replace(/\$\d+/g, "?"));
    return whenFree(() => (stmt.reader ? (stmt.all(...params) as Record<string, unknown>[]) : (stmt.run(...params), [])));
  }
  return (await db.pool.query(text, params)).rows;
}

/** Runs several statements at once. */
export async function script(db: Database, text: string): Promise<void> {
  if (db.kind === "sqlite") db.sqlite.exec(text);
  else await db.pool.query(text);
}

/** Makes every INSERT, UPDATE or DELETE on a table fail, as a full or broken disk would; returns the undo. */
export async function failWrites(db: Database, table: string, on: "INSERT" | "UPDATE" | "DELETE"): Promise<() => Promise<void>> {
  const name = `${table}_${on.toLowerCase()}_fails`;
  if (db.kind === "sqlite") {
    await script(db, `CREATE TRIGGER ${name} BEFORE ${on} ON ${table} BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END;`);
    return () => script(db, `DROP TRIGGER ${name}`);
  }
  await script(
    db,
    `CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'simulated disk failure'; END $$;
     CREATE TRIGGER ${name} BEFORE ${on} ON ${table} FOR EACH ROW EXECUTE FUNCTION ${name}();`,
  );
  return () => script(db, `DROP TRIGGER ${name} ON ${table}; DROP FUNCTION ${name}();`);
}

/**
 * Runs `fn` with Chron's append-only triggers off, as only the database's owner could: this is
 * how tests play an administrator who tampers with the trail.
 */
export async function asDatabaseOwner<T>(db: Database, fn: () => Promise<T>): Promise<T> {
  if (db.kind === "sqlite") {
    const triggers = (await sql(db, "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ('chron_records', 'chron_checkpoints')")) as { name: string; sql: string }[];
    for (const t of triggers) await script(db, `DROP TRIGGER "${t.name}"`);
    try {
      return await fn();
    } finally {
      for (const t of triggers) await script(db, `${t.sql};`);
    }
  }
  await script(db, "ALTER TABLE chron_records DISABLE TRIGGER USER; ALTER TABLE chron_checkpoints DISABLE TRIGGER USER;");
  try {
    return await fn();
  } finally {
    await script(db, "ALTER TABLE chron_records ENABLE TRIGGER USER; ALTER TABLE chron_checkpoints ENABLE TRIGGER USER;");
  }
}
