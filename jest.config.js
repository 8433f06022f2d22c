const path = require("node:path");

// `make test-lts` (scripts/test-lts.sh): native modules built for the LTS Node.js, from their own folder.
const lts = process.env.CLAIIM_LTS_MODULES;
const ltsModules = lts ? Object.fromEntries(require("./scripts/lts-modules.cjs").NATIVE.map((m) => [`^${m}$`, path.join(lts, m)])) : {};

/** @type {import('jest').Config} */
module.exports = {
  moduleNameMapper: ltsModules,
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  testMatch: ["**/*.test.ts"],
  transform: {
    // Type-checking is tsc's job (make setup); jest only transpiles.
    "^.+\\.ts$": ["ts-jest", { diagnostics: false }],
  },
  globalSetup: "<rootDir>/test/support/global-setup.ts",
  testTimeout: 60000,
  maxWorkers: 2,
};
