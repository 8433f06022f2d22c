-- AlterTable
ALTER TABLE "chron_checkpoints" ADD COLUMN "frontier" TEXT;

-- CreateTable
CREATE TABLE "chron_prune_window" (
    "up_to_seq" BIGINT NOT NULL PRIMARY KEY
);


-- Deletion from Chron only through the retention path: inside its transaction a window row says
-- how far records (and the checkpoints before that point) may go. Everything else is still refused.
DROP TRIGGER "chron_records_no_delete";
CREATE TRIGGER "chron_records_no_delete" BEFORE DELETE ON "chron_records"
WHEN NOT EXISTS (SELECT 1 FROM "chron_prune_window" WHERE OLD."seq" <= "up_to_seq")
BEGIN SELECT RAISE(ABORT, 'chron_records is append-only'); END;
DROP TRIGGER "chron_checkpoints_no_delete";
CREATE TRIGGER "chron_checkpoints_no_delete" BEFORE DELETE ON "chron_checkpoints"
WHEN NOT EXISTS (SELECT 1 FROM "chron_prune_window" WHERE OLD."seq" < "up_to_seq")
BEGIN SELECT RAISE(ABORT, 'chron_checkpoints is append-only'); END;
