import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { RequestListener } from "node:http";
import request from "supertest";
import { loadConfig } from "../../src/config";
import { createLogger } from "../../src/lib/logger";
import { createCore, createHttpApp, type Core } from "../../src/server";
import { FakeIdentityStore } from "./fakes/identity-store";
import { FakePolicyStore } from "./fakes/policy-store";
import { FakeChronStore } from "./fakes/chron-store";
import { OpaCliCompiler } from "../../src/policy/opa-compiler";
import { FakeApprovalStore } from "./fakes/approval-store";
import { FakeReplayStore } from "./fakes/replay-store";
import { FakeReceivedHeadStore } from "./fakes/received-store";

const ROOT = path.resolve(__dirname, "../..");
export const OPA_BIN = process.env.OPA_BIN ?? path.join(ROOT, ".tools/bin/opa");

export interface FakeApp {
  core: Core;
  stores: { identity: FakeIdentityStore; policy: FakePolicyStore; chron: FakeChronStore; approval: FakeApprovalStore; received: FakeReceivedHeadStore; replays: FakeReplayStore };
  http: ReturnType<typeof request>;
  /** The HTTP request listener that `http` drives, for tests that need a server of their own. */
  listener: RequestListener;
  admin: string;
}

/** The real services and HTTP app on in-memory stores, for route tests. */
export async function fakeApp(): Promise<FakeApp> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "claiim-route-"));
  const config = loadConfig(
    { DATABASE_URL: `file:${dir}/unused.db`, CLAIIM_DATA_DIR: dir, CLAIIM_BUNDLE_DIR: path.join(dir, "bundles"), CLAIIM_REGO_DIR: path.join(ROOT, "rego"), OPA_BIN },
    ROOT,
  );
  const logger = createLogger("silent");
  const identity = new FakeIdentityStore();
  const policy = new FakePolicyStore();
  const approval = new FakeApprovalStore();
  const stores = { identity, policy, approval, chron: new FakeChronStore().joins(identity, policy, approval), received: new FakeReceivedHeadStore(), replays: new FakeReplayStore() };
  const core = await createCore(config, stores, new OpaCliCompiler(OPA_BIN), logger, async () => true);
  const admin = fs.readFileSync(core.bootstrapCredentialFile!, "utf8").trim();
  const listener = createHttpApp(core, config, logger);
  return { core, stores, http: request(listener), listener, admin };
}
