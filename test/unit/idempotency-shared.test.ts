import { generateKeyPairSync } from "node:crypto";
import { ChronWriter } from "../../src/chron/chron-writer";
import { seal, type ChronRow, type DecisionContent } from "../../src/chron/record";
import { LocalKeySigner } from "../../src/chron/signer";
import { DecisionService } from "../../src/decisions/decision-service";
import { IdempotencyIndex } from "../../src/decisions/idempotency";
import type { AgentContext } from "../../src/identity/identity-service";
import type { ActivePolicy } from "../../src/policy/policy-engine";
import { ConflictError } from "../../src/lib/errors";
import { createLogger } from "../../src/lib/logger";
import { FakeChronStore } from "../support/fakes/chron-store";
import { outcomeOf } from "../support/pool";
import { decisionContent } from "../support/decision-content";

// Idempotency-Keys shared by every process on one database: each "process" here is a decision
// service with its own writer and its own in-memory index, over one store that holds each
// (agent, key) once, as the database's unique index does.

const now = new Date();
const logger = createLogger("silent");
const signer = new LocalKeySigner(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "pkcs8" }) as string);
const caller = (agentId = "a-1") => ({ agentId, credentialId: `c-${agentId}`, onBehalfOf: null });
const request = { action: "deploy", resource: "staging", purpose: "release", skill: { name: "deploy", version: "1.2.0" } };

function context(agentId: string): AgentContext {
  return {
    agent: { id: agentId, orgId: "o-1", name: `bot-${agentId}`, description: "", ownerId: "h-1", status: "active", statusReason: null, createdAt: now, updatedAt: now, skills: [{ name: "deploy", version: "1.2.0", registeredAt: now }] },
    organization: { id: "o-1", slug: "acme", name: "Acme", createdAt: now },
    owner: { id: "h-1", orgId: "o-1", name: "Alice", email: "alice@x", status: "active", createdAt: now },
  };
}

const policy: ActivePolicy = {
  version: 1,
  revision: "1-sha256:x",
  digest: "sha256:x",
  activatedAt: now,
  signedBy: "k",
  data: {},
  evaluate: async () => outcomeOf(() => ({ allow: true, reasons: ["ok"] })),
};

function processOn(store: FakeChronStore, ttlMs = 3600_000, clock: () => number = Date.now) {
  const writer = new ChronWriter(store, 100, logger, signer);
  const decisions = new DecisionService(
    {
      agentContext: (id) => context(id),
      activePolicy: () => policy,
      shadowPolicy: () => null,
      record: (c) => writer.append(c),
      claimOf: (agentId, key) => writer.claimOf(agentId, key),
      redact: (c) => c,
    },
    logger,
    undefined,
    new IdempotencyIndex({ ttlMs, maxKeys: 1000 }, clock),
  );
  return { writer, decisions, once: (key: string, req = request, agentId = "a-1") => decisions.decideOnce(caller(agentId), req, key) };
}

const recorded = (store: FakeChronStore) => store.rows.map((r) => JSON.parse(r.content) as DecisionContent);

describe("Idempotency-Keys across processes on one database", () => {
  test("a retry that reaches another process gets the first answer, recorded once; another request with the key is a 409 there too", async () => {
    const store = new FakeChronStore();
    const [a, b] = [processOn(store), processOn(store)];
    const first = await a.once("k-1");
    const again = await b.once("k-1");
    expect(again).toEqual({ response: first.response, replayed: true });
    // Known to b from now on: no second read of the database.
    const appends = store.appendCalls;
    expect(await b.once("k-1")).toEqual({ response: first.response, replayed: true });
    expect(store.appendCalls).toBe(appends);
    await expect(b.once("k-1", { ...request, resource: "production" })).rejects.toThrow(ConflictError);
    expect(recorded(store).map((d) => d.decision_id)).toEqual([first.response.decision_id]);
    expect(store.rows[0].idempotencyKey).toBe("k-1");
  });

  test("the same key sent to two processes at once: one decision, every answer the same", async () => {
    const store = new FakeChronStore();
    const [a, b] = [processOn(store), processOn(store)];
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).once("k-race")));
    expect(new Set(answers.map((x) => x.response.decision_id)).size).toBe(1);
    expect(answers.filter((x) => !x.replayed)).toHaveLength(1);
    expect(recorded(store)).toHaveLength(1);
  });

  test("a retry whose key another process holds does not fail the other decisions of its batch, nor mark Chron failing", async () => {
    const store = new FakeChronStore();
    const [a, b] = [processOn(store), processOn(store)];
    const first = await a.once("k-batch");
    // One batch on b: the retry, and other agents' decisions with keys of their own.
    const answers = await Promise.all([b.once("k-batch"), b.once("k-x", request, "a-2"), b.once("k-y", request, "a-3"), b.decisions.decide(caller("a-4"), request)]);
    expect(answers[0]).toEqual({ response: first.response, replayed: true });
    expect(answers.slice(1).every((x) => ("response" in x ? !x.replayed : true))).toBe(true);
    expect(recorded(store).map((d) => d.agent.id).sort()).toEqual(["a-1", "a-2", "a-3", "a-4"]);
    expect(b.writer.health().failing).toBeNull();
  });

  test("a key older than the TTL binds nothing: the request is decided as one without a key, and the first record keeps the key", async () => {
    const store = new FakeChronStore();
    let t = Date.now();
    const a = processOn(store, 1000, () => t);
    const b = processOn(store, 1000, () => t);
    const first = await a.once("k-old");
    // A minute later by the indexes' clock (the record's timestamp is the real one).
    t += 60_000;
    const late = await b.once("k-old", { ...request, resource: "production" });
    expect(late.replayed).toBe(false);
    expect(late.response.decision_id).not.toBe(first.response.decision_id);
    const [, second] = recorded(store);
    expect(second.idempotency_key).toBeUndefined();
    expect(store.rows.map((r) => r.idempotencyKey ?? null)).toEqual(["k-old", null]);
  });

  test("a row that holds the key but is not CLAIIM's (inserted by hand, no tag) is never replayed: the request is decided afresh", async () => {
    const store = new FakeChronStore();
    const forged = decisionContent(1, { decision_id: "forged-1", timestamp: now.toISOString(), agent: { id: "a-1", name: "bot-a-1", status: "active" }, reasons: ["forged"], idempotency_key: "k-forged" });
    // The database's owner inserts a row below the chain, claiming the key, with a hash that covers it.
    const [row] = seal([forged], { seq: -2, hash: "0".repeat(64) });
    store.rows.unshift({ ...row, idempotencyKey: "k-forged" } as ChronRow);
    const b = processOn(store);
    const answer = await b.once("k-forged");
    expect(answer.replayed).toBe(false);
    expect(answer.response.reasons).toEqual(["ok"]);
    expect(answer.response.decision_id).not.toBe(forged.decision_id);
  });

  test("a tagged record of another agent found under the key (a column edited by hand) is not an answer either", async () => {
    const store = new FakeChronStore();
    const a = processOn(store);
    await a.once("k-theirs", request, "a-2");
    // The key column of a-2's record now names a-1: the content says otherwise.
    store.rows[0] = { ...store.rows[0], agentId: "a-1" };
    const b = processOn(store);
    const mine = await b.once("k-theirs");
    expect(mine.replayed).toBe(false);
    expect(recorded(store).map((d) => d.agent.id)).toEqual(["a-2", "a-1"]);
  });
});
