import type { DecisionContent } from "../../src/chron/record";

/**
 * A well-formed decision record's content for Chron's own tests: the n-th decision of one agent,
 * one second apart from 2026-01-01, with any field replaced by `over`.
 */
export function decisionContent(n: number, over: Partial<DecisionContent> = {}): DecisionContent {
  return {
    kind: "decision",
    decision_id: `d-${n}`,
    timestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    path: "claiim/decision",
    organization: { id: "o-1", slug: "acme" },
    agent: { id: "a-1", name: "bot", status: "active" },
    accountable_human: { id: "h-1", name: "Alice", email: "alice@acme.example", status: "active" },
    on_behalf_of: null,
    requested_by: { credential_id: "c-1" },
    action: "deploy",
    resource: "staging",
    purpose: "release",
    skill: { name: "deploy", version: "1.2.0" },
    decision: "allow",
    reasons: ["permitted"],
    policy: { version: 1, revision: "1-sha256:x", digest: "sha256:x" },
    bundles: { claiim: { revision: "1-sha256:x" } },
    input: { n },
    ...over,
  };
}
