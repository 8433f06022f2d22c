import path from "node:path";
import { defineConfig } from "prisma/config";
import { PrismaBetterSQLite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaPg } from "@prisma/adapter-pg";

// The Prisma CLI (migrate, generate) picks the schema of the provider that DATABASE_URL names,
// with the same driver adapters the application uses at run time.
const url = process.env.DATABASE_URL ?? "file:./data/claiim.db";
const postgres = /^postgres(ql)?:\/\//.test(url);

export default defineConfig({
  engine: "js",
  experimental: { adapter: true },
  schema: path.join("prisma", postgres ? "postgresql" : "sqlite", "schema.prisma"),
  migrations: { path: path.join("prisma", postgres ? "postgresql" : "sqlite", "migrations") },
  async adapter() {
    return postgres ? new PrismaPg({ connectionString: url }) : new PrismaBetterSQLite3({ url });
  },
});
