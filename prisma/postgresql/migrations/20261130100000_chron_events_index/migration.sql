-- Every process follows the events that the others commit (src/chron/follower.ts): each poll
-- reads the event records after the last one it applied. Without an index, it stepped through
-- every decision since its last poll. This partial index holds the events alone: a poll reads
-- only them, and the insert of a decision does not touch it.
CREATE INDEX "chron_records_events" ON "chron_records" ("seq") WHERE "kind" = 'event';
