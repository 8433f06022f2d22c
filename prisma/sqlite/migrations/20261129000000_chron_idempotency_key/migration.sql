-- An Idempotency-Key binds one decision per agent in the database itself, not only in each
-- process's memory: a retry that reaches another process (a worker, a replica) collides with the
-- first record's key, and that process answers with the first record instead of a second decision.
-- The column is written with the record, in the same INSERT, so the decision path reads nothing.
-- Records written before it, and decisions without a key, hold NULL, which the partial index
-- leaves out.
ALTER TABLE "chron_records" ADD COLUMN "idempotency_key" TEXT;
CREATE UNIQUE INDEX "chron_records_idempotency_key" ON "chron_records" ("agent_id", "idempotency_key") WHERE "idempotency_key" IS NOT NULL;
