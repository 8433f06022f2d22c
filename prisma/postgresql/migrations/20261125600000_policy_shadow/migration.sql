-- AlterTable
ALTER TABLE "policy_state" ADD COLUMN     "shadow_set_by" TEXT,
ADD COLUMN     "shadow_since" TIMESTAMP(3),
ADD COLUMN     "shadow_version" INTEGER;

