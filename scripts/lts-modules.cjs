// Loaded with `node --require` by `make test-lts` (scripts/test-lts.sh): native modules resolve to
// the copies built for the LTS Node.js in CLAIIM_LTS_MODULES, everything else to the project's own
// node_modules. jest's own resolver gets the same mapping from jest.config.js.
const Module = require("node:module");
const path = require("node:path");

const dir = process.env.CLAIIM_LTS_MODULES;
const NATIVE = new Set(["better-sqlite3"]);
if (dir) {
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    return resolve.call(this, NATIVE.has(request) ? path.join(dir, request) : request, ...rest);
  };
}
module.exports = { NATIVE: [...NATIVE] };
