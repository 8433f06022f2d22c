-- Leases: which CLAIIM process does the work only one may do at a time (the Chron coordinator).
-- CreateTable
CREATE TABLE "leases" (
    "name" TEXT NOT NULL,
    "holder" TEXT NOT NULL,
    "expires_ms" BIGINT NOT NULL,
    "term" BIGINT NOT NULL,

    CONSTRAINT "leases_pkey" PRIMARY KEY ("name")
);
