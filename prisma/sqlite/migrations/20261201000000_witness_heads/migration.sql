-- The signed tree heads this CLAIIM holds as the witness of other CLAIIMs (POST /v1/witness/heads),
-- one row per head, one log per witness key. They were kept in one file per log and per process
-- (worker-N/received/), so a log that showed each branch of a fork to a different process was
-- caught by none: in the database every process holds the same heads.
-- WARNING: from_size is the size of the head each row extends (0 for the first head of a log), and it
-- is unique per log, so that a head can be extended once only: two processes that each check a
-- new head against the same last head cannot both store theirs, and the rows of a log are one
-- chain, never a fork. line is the head as received (one JSON line of a witness log).
-- CreateTable
CREATE TABLE "witness_heads" (
    "log" TEXT NOT NULL,
    "tree_size" BIGINT NOT NULL,
    "from_size" BIGINT NOT NULL,
    "root" TEXT NOT NULL,
    "line" TEXT NOT NULL,
    "received_ms" BIGINT NOT NULL,

    CONSTRAINT "witness_heads_pkey" PRIMARY KEY ("log", "tree_size")
);

-- CreateIndex
CREATE UNIQUE INDEX "witness_heads_log_from_size_key" ON "witness_heads"("log", "from_size");
