-- The policy version each decision was made under, as a column, for reports grouped by it.
ALTER TABLE "chron_records" ADD COLUMN "policy_version" INTEGER;
CREATE INDEX "chron_records_policy_version_idx" ON "chron_records"("policy_version");

-- Existing decisions get it from their own content. This one migration steps around the
-- append-only guard, and puts it back as it was.
DROP TRIGGER "chron_records_no_update";
UPDATE "chron_records" SET "policy_version" = json_extract("content", '$.policy.version') WHERE "kind" = 'decision';
CREATE TRIGGER "chron_records_no_update" BEFORE UPDATE ON "chron_records"
BEGIN SELECT RAISE(ABORT, 'chron_records is append-only'); END;
