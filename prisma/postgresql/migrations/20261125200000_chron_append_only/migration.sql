-- CreateTable
CREATE TABLE "chron_checkpoints" (
    "seq" BIGINT NOT NULL,
    "hash" TEXT NOT NULL,
    "ts_ms" BIGINT NOT NULL,
    "count" BIGINT NOT NULL,
    "kid" TEXT NOT NULL,
    "jws" TEXT NOT NULL,

    CONSTRAINT "chron_checkpoints_pkey" PRIMARY KEY ("seq")
);


-- Chron is append-only in the database itself, not only in the code: rows can be inserted and
-- read, never changed, removed or truncated. (Grant the application INSERT and SELECT only on
-- these tables, as the README shows.)
-- WARNING: Prisma's PostgreSQL adapter runs a migration by splitting it at every semicolon, so
-- the function body below spells its one semicolon as the octal escape \073 of an E'' string.
CREATE FUNCTION "chron_append_only"() RETURNS trigger LANGUAGE plpgsql AS
E'BEGIN RAISE EXCEPTION \'% is append-only: % refused\', TG_TABLE_NAME, TG_OP USING ERRCODE = \'insufficient_privilege\'\073 END';
CREATE TRIGGER "chron_records_append_only" BEFORE UPDATE OR DELETE ON "chron_records"
  FOR EACH ROW EXECUTE FUNCTION "chron_append_only"();
CREATE TRIGGER "chron_records_no_truncate" BEFORE TRUNCATE ON "chron_records"
  FOR EACH STATEMENT EXECUTE FUNCTION "chron_append_only"();
CREATE TRIGGER "chron_checkpoints_append_only" BEFORE UPDATE OR DELETE ON "chron_checkpoints"
  FOR EACH ROW EXECUTE FUNCTION "chron_append_only"();
CREATE TRIGGER "chron_checkpoints_no_truncate" BEFORE TRUNCATE ON "chron_checkpoints"
  FOR EACH STATEMENT EXECUTE FUNCTION "chron_append_only"();
