// Makes (or updates) the limited PostgreSQL role CLAIIM runs as, as docs/chron.md ("Append-only, in the database") recommends: it may
// read and write CLAIIM's tables, but never UPDATE, DELETE or TRUNCATE Chron, and since it owns
// nothing it cannot turn Chron's append-only triggers off either. Run it as the tables' owner, after
// every `prisma migrate deploy` (new tables get their grants then): scripts/migrate-postgres.sh.
//
//   DATABASE_URL=postgresql://owner:…@host/claiim CLAIIM_APP_ROLE=claiim_app CLAIIM_APP_PASSWORD=… node scripts/postgres-roles.mjs
import pg from "pg";

const url = process.env.DATABASE_URL;
const role = process.env.CLAIIM_APP_ROLE;
const password = process.env.CLAIIM_APP_PASSWORD;
const fail = (message) => {
  process.stderr.write(`postgres-roles: ${message}\n`);
  process.exit(2);
};
if (!url || !/^postgres(ql)?:\/\//.test(url)) fail("DATABASE_URL must be the owner's postgresql:// URL");
if (!role || !/^[a-z_][a-z0-9_]{0,62}$/.test(role)) fail("CLAIIM_APP_ROLE must be a lower-case role name");
if (!password) fail("CLAIIM_APP_PASSWORD is required");

const client = new pg.Client({ connectionString: url });
try {
  await client.connect();
  const quoted = client.escapeIdentifier(role);
  const existing = (await client.query("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = $1", [role])).rows[0];
  // A role that may do anything makes the grants below meaningless.
  if (existing && (existing.rolsuper || existing.rolcreaterole || existing.rolcreatedb || existing.rolbypassrls)) {
    fail(`${role} exists with SUPERUSER, CREATEROLE, CREATEDB or BYPASSRLS: CLAIIM must run as a role without them`);
  }
  // A new role has none of those. A password is a literal in CREATE/ALTER ROLE, not a parameter: escaped as one.
  await client.query(`${existing ? "ALTER" : "CREATE"} ROLE ${quoted} LOGIN PASSWORD ${client.escapeLiteral(password)}`);
  await client.query("BEGIN");
  await client.query(`GRANT USAGE ON SCHEMA public TO ${quoted}`);
  await client.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${quoted}`);
  await client.query(`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${quoted}`);
  await client.query(`REVOKE UPDATE, DELETE, TRUNCATE ON chron_records, chron_checkpoints FROM ${quoted}`);
  // Prisma's own bookkeeping is the owner's.
  await client.query(`REVOKE ALL ON _prisma_migrations FROM ${quoted}`);
  await client.query("COMMIT");
  process.stdout.write(`postgres-roles: ${role} may use CLAIIM's tables; it may not change or delete Chron\n`);
} catch (err) {
  fail(err.message);
} finally {
  await client.end().catch(() => undefined);
}
