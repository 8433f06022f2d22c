-- Every CLAIIM process keeps its in-memory state up to date from the events other processes
-- commit (src/chron/follower.ts). On PostgreSQL each committed event is announced on the channel
-- claiim_chron_events, so that listeners read it at once instead of at their next poll. Only
-- events are announced (a decision changes no state): decisions pay only the WHEN test. NOTIFY is
-- transactional: it is delivered at commit, never for a rolled-back record. An empty payload makes
-- a transaction's announcements one.
-- WARNING: Prisma's PostgreSQL adapter runs a migration by splitting it at every semicolon, so
-- the function body below spells its semicolons as the octal escape \073 of an E'' string.
CREATE FUNCTION "chron_event_notify"() RETURNS trigger LANGUAGE plpgsql AS
E'BEGIN PERFORM pg_notify(\'claiim_chron_events\', \'\')\073 RETURN NULL\073 END';
CREATE TRIGGER "chron_records_event_notify" AFTER INSERT ON "chron_records"
  FOR EACH ROW WHEN (NEW."kind" = 'event') EXECUTE FUNCTION "chron_event_notify"();
