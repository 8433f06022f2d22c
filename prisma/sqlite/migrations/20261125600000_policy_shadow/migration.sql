-- AlterTable
ALTER TABLE "policy_state" ADD COLUMN "shadow_set_by" TEXT;
ALTER TABLE "policy_state" ADD COLUMN "shadow_since" DATETIME;
ALTER TABLE "policy_state" ADD COLUMN "shadow_version" INTEGER;

