/**
 * A row that a unique index already holds: what a store reports when a write collides, in its
 * own terms, for the service to say what that means (a taken name, a replayed assertion, a
 * concurrent publish). Raised by the Prisma and SQL stores and by the fakes alike.
 */
export class DuplicateKeyError extends Error {
  constructor(readonly what: string, cause?: unknown) {
    super(`${what} already exists`, { cause });
  }
}

/**
 * True when a database refused a write for a unique index, however it said so: Prisma (P2002),
 * PostgreSQL (SQLSTATE 23505), SQLite (extended codes 2067 and 1555, or the driver's names).
 */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: unknown; meta?: { code?: unknown }; message?: unknown } | null;
  const code = String(e?.meta?.code ?? e?.code ?? "");
  return (
    code === "P2002" ||
    code === "23505" ||
    code === "2067" ||
    code === "1555" ||
    code === "SQLITE_CONSTRAINT_PRIMARYKEY" ||
    code === "SQLITE_CONSTRAINT_UNIQUE" ||
    /UNIQUE constraint failed|unique constraint|duplicate key/i.test(String(e?.message ?? ""))
  );
}

/** Rethrows a unique violation as DuplicateKeyError(what); anything else as it is. */
export function duplicateAs(what: string): (err: unknown) => never {
  return (err) => {
    if (isUniqueViolation(err)) throw new DuplicateKeyError(what, err);
    throw err;
  };
}
