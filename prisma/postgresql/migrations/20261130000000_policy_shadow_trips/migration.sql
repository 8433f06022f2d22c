-- The shadow's trips, counted by every process together (see models.prisma).
ALTER TABLE "policy_state" ADD COLUMN "shadow_trips" INTEGER NOT NULL DEFAULT 0;
