-- Policy replays, saved by the process that runs each one: every CLAIIM process on the database
-- reads them from here (a replica behind a load balancer answers for a replay another started),
-- and they outlive a restart. They were held in the memory of the process running them.
-- summary is the replay view without its changed records, one row each in policy_replay_changes.
-- CreateTable
CREATE TABLE "policy_replays" (
    "id" TEXT NOT NULL,
    "org_id" TEXT,
    "state" TEXT NOT NULL,
    "started_ms" BIGINT NOT NULL,
    "updated_ms" BIGINT NOT NULL,
    "summary" TEXT NOT NULL,

    CONSTRAINT "policy_replays_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "policy_replay_changes" (
    "replay_id" TEXT NOT NULL,
    "n" INTEGER NOT NULL,
    "direction" TEXT NOT NULL,
    "record" TEXT NOT NULL,

    CONSTRAINT "policy_replay_changes_pkey" PRIMARY KEY ("replay_id","n")
);

-- CreateIndex
CREATE INDEX "policy_replays_started_ms_idx" ON "policy_replays"("started_ms");

-- AddForeignKey
ALTER TABLE "policy_replay_changes" ADD CONSTRAINT "policy_replay_changes_replay_id_fkey" FOREIGN KEY ("replay_id") REFERENCES "policy_replays"("id") ON DELETE CASCADE ON UPDATE CASCADE;
