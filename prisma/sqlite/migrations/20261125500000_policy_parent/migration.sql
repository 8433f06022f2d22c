-- AlterTable
ALTER TABLE "policy_bundles" ADD COLUMN "parent" INTEGER;

