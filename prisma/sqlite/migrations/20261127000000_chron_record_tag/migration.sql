-- Each record CLAIIM writes is tagged with a MAC under a key derived from its Chron signing key,
-- which lives outside the database: rows a database administrator appends or rewrites lack a
-- valid tag. Earlier records keep a null tag, and their signed checkpoints vouch for them.
ALTER TABLE "chron_records" ADD COLUMN "tag" TEXT;
