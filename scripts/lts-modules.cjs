// Loaded with `node --require` by `make test-lts` (scripts/test-lts.sh): native modules resolve to
// the copies built for the LTS Node.js in CLAIIM_LTS_MODULES, everything else to the project's own
// node_modules, whether they are loaded with require() or import (Prisma's driver adapter imports
// better-sqlite3). jest's own resolver gets the same mapping from jest.config.js.
const Module = require("node:module");
const { pathToFileURL } = require("node:url");

const dir = process.env.CLAIIM_LTS_MODULES;
const NATIVE = new Set(["better-sqlite3"]);
if (dir) {
  if (typeof Module.registerHooks !== "function") throw new Error(`make test-lts needs module.registerHooks (Node.js 22.15 or later); this is ${process.version}`);
  // The entry files of the LTS builds, found the way require finds them, from their own folder.
  const entries = new Map([...NATIVE].map((m) => [m, pathToFileURL(require.resolve(m, { paths: [dir] })).href]));
  Module.registerHooks({
    resolve(specifier, context, next) {
      const entry = entries.get(specifier);
      return entry ? { url: entry, format: "commonjs", shortCircuit: true } : next(specifier, context);
    },
  });
}
module.exports = { NATIVE: [...NATIVE] };
