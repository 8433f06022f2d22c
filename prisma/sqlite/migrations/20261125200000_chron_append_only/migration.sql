-- CreateTable
CREATE TABLE "chron_checkpoints" (
    "seq" BIGINT NOT NULL PRIMARY KEY,
    "hash" TEXT NOT NULL,
    "ts_ms" BIGINT NOT NULL,
    "count" BIGINT NOT NULL,
    "kid" TEXT NOT NULL,
    "jws" TEXT NOT NULL
);


-- Chron is append-only in the database itself, not only in the code: rows can be inserted and
-- read, never changed or removed.
CREATE TRIGGER "chron_records_no_update" BEFORE UPDATE ON "chron_records"
BEGIN SELECT RAISE(ABORT, 'chron_records is append-only'); END;
CREATE TRIGGER "chron_records_no_delete" BEFORE DELETE ON "chron_records"
BEGIN SELECT RAISE(ABORT, 'chron_records is append-only'); END;
CREATE TRIGGER "chron_checkpoints_no_update" BEFORE UPDATE ON "chron_checkpoints"
BEGIN SELECT RAISE(ABORT, 'chron_checkpoints is append-only'); END;
CREATE TRIGGER "chron_checkpoints_no_delete" BEFORE DELETE ON "chron_checkpoints"
BEGIN SELECT RAISE(ABORT, 'chron_checkpoints is append-only'); END;
