-- AlterTable
ALTER TABLE "chron_checkpoints" ADD COLUMN     "frontier" TEXT;

-- CreateTable
CREATE TABLE "chron_prune_window" (
    "up_to_seq" BIGINT NOT NULL,

    CONSTRAINT "chron_prune_window_pkey" PRIMARY KEY ("up_to_seq")
);


-- Deletion from Chron only through the retention path: inside its transaction a window row says
-- how far records (and the checkpoints before that point) may go. Everything else is still refused.
-- WARNING: as in the append-only migration, semicolons inside the function body are spelled \073.
CREATE FUNCTION "chron_delete_guard"() RETURNS trigger LANGUAGE plpgsql AS
E'BEGIN IF EXISTS (SELECT 1 FROM chron_prune_window w WHERE OLD.seq < w.up_to_seq OR (TG_TABLE_NAME = \'chron_records\' AND OLD.seq = w.up_to_seq)) THEN RETURN OLD\073 END IF\073 RAISE EXCEPTION \'% is append-only: % refused\', TG_TABLE_NAME, TG_OP USING ERRCODE = \'insufficient_privilege\'\073 END';
DROP TRIGGER "chron_records_append_only" ON "chron_records";
CREATE TRIGGER "chron_records_append_only" BEFORE UPDATE ON "chron_records"
  FOR EACH ROW EXECUTE FUNCTION "chron_append_only"();
CREATE TRIGGER "chron_records_delete_guard" BEFORE DELETE ON "chron_records"
  FOR EACH ROW EXECUTE FUNCTION "chron_delete_guard"();
DROP TRIGGER "chron_checkpoints_append_only" ON "chron_checkpoints";
CREATE TRIGGER "chron_checkpoints_append_only" BEFORE UPDATE ON "chron_checkpoints"
  FOR EACH ROW EXECUTE FUNCTION "chron_append_only"();
CREATE TRIGGER "chron_checkpoints_delete_guard" BEFORE DELETE ON "chron_checkpoints"
  FOR EACH ROW EXECUTE FUNCTION "chron_delete_guard"();
