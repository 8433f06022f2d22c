// Renders prisma/models.prisma into one schema per provider. Prisma fixes the provider per schema,
// so the two files differ only in their header. `--check` fails when a rendered file is stale.
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const models = readFileSync(join(root, "prisma/models.prisma"), "utf8");
const providers = { sqlite: "sqlite", postgresql: "postgresql" };
const check = process.argv.includes("--check");
let stale = false;

for (const [dir, provider] of Object.entries(providers)) {
  const header = `// GENERATED from prisma/models.prisma by scripts/prisma-schemas.mjs. Do not edit.
generator client {
  provider   = "prisma-client"
  output     = "../../src/generated/prisma-${dir}"
  engineType = "client"
  moduleFormat = "cjs"
  importFileExtension = ""
}

datasource db {
  provider = "${provider}"
  url      = env("DATABASE_URL")
}
`;
  const file = join(root, "prisma", dir, "schema.prisma");
  const text = header + "\n" + models;
  if (check) {
    if (!existsSync(file) || readFileSync(file, "utf8") !== text) {
      console.error(`${file} is stale: run node scripts/prisma-schemas.mjs`);
      stale = true;
    }
    continue;
  }
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
}
if (stale) process.exit(1);
