import fs from "node:fs";
import path from "node:path";
import { withoutTests } from "./policies";

const ROOT = path.resolve(__dirname, "../..");

/** What the console's browser tests seed, over real HTTP, and the counts they expect to see. */
type Tally = { allow: number; deny: number; approval_required: number };

export interface Seeded {
  agents: Record<string, { id: string; org: string; token: string; skill: { name: string; version: string }; allows: number; denies: number; approvals: number }>;
  keys: { auditor: string; globexAuditor: string; manager: string; author: string; acmeApprover: string; globexApprover: string };
  totals: Tally;
  byOrg: Record<string, Tally>;
  /** Approvals asked for: asking again for the same request answers with the approval already open. */
  approvalsRequested: { total: number; byOrg: Record<string, number> };
}

// Each agent asks, interleaved: `allow` is permitted, `deny` is denied outright, `approval` needs a
// human's approval under the reference policy (production deploys, customer responses).
const PLAN = [
  {
    org: "acme",
    name: "deploy-bot",
    owner: "alice@acme.example",
    skill: { name: "deploy", version: "1.2.0" },
    allow: ["deploy", "staging"],
    deny: ["rollback", "production"],
    approval: ["deploy", "production"],
    allows: 12,
    denies: 5,
    approvals: 3,
  },
  { org: "acme", name: "finance-bot", owner: "bob@acme.example", skill: { name: "finance-reporting", version: "1.0.0" }, allow: ["read_report", "report/q3"], deny: ["execute_payment", "vendor/123"], allows: 8, denies: 3, approvals: 0 },
  {
    org: "globex",
    name: "support-bot",
    owner: "gus@globex.example",
    skill: { name: "customer-support", version: "2.1.0" },
    allow: ["draft_response", "ticket/17"],
    deny: ["refund_order", "ticket/17"],
    approval: ["send_response", "ticket/17"],
    allows: 6,
    denies: 1,
    approvals: 2,
  },
  { org: "globex", name: "review-bot", owner: "gus@globex.example", skill: { name: "code-review", version: "1.0.0" }, allow: ["comment_pull_request", "repo/api"], deny: ["merge_pull_request", "repo/api"], allows: 4, denies: 1, approvals: 0 },
] as const;

const HUMANS = [
  { organization: "acme", name: "Alice Ops", email: "alice@acme.example" },
  { organization: "acme", name: "Bob Finance", email: "bob@acme.example" },
  { organization: "globex", name: "Gus Support", email: "gus@globex.example" },
];

async function call<T>(base: string, token: string, method: string, route: string, body?: unknown, expect = [200, 201, 202]): Promise<T> {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!expect.includes(res.status)) throw new Error(`${method} ${route}: ${res.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

/**
 * Two organisations, three humans, four agents and their decisions (allows, denies and approvals
 * required in known numbers, so two approvals pending); keys of each role; policy version 2 (which no longer permits drafting responses to customer tickets)
 * published and shadowing version 1, so that the shadow report and a replay have something to say.
 */
export async function seedConsole(base: string, admin: string): Promise<Seeded> {
  const as = <T>(method: string, route: string, body?: unknown) => call<T>(base, admin, method, route, body);
  for (const slug of ["acme", "globex"]) await as("POST", "/v1/organizations", { slug, name: slug === "acme" ? "Acme Corp" : "Globex" });
  for (const h of HUMANS) await as("POST", "/v1/humans", h);

  const files = Object.fromEntries(fs.readdirSync(path.join(ROOT, "rego/claiim")).map((f) => [`claiim/${f}`, fs.readFileSync(path.join(ROOT, "rego/claiim", f), "utf8")]));
  const permit = '{ "action": "draft_response", "resources": ["ticket/*"] }';
  if (!files["claiim/data.json"].includes(permit)) throw new Error("rego/claiim/data.json changed: update the console seed");
  const data = files["claiim/data.json"].replace(permit, '{ "action": "draft_response", "resources": ["ticket/internal/*"] }');
  await as("POST", "/v1/policies", { files: { ...withoutTests(files), "claiim/data.json": data }, message: "support drafts go through the review queue" });
  await as("PUT", "/v1/policies/shadow", { version: 2 });

  const seeded: Seeded = {
    agents: {},
    keys: { auditor: "", globexAuditor: "", manager: "", author: "", acmeApprover: "", globexApprover: "" },
    totals: { allow: 0, deny: 0, approval_required: 0 },
    byOrg: { acme: { allow: 0, deny: 0, approval_required: 0 }, globex: { allow: 0, deny: 0, approval_required: 0 } },
    approvalsRequested: { total: 0, byOrg: { acme: 0, globex: 0 } },
  };
  for (const p of PLAN) {
    const agent = await as<{ id: string }>("POST", "/v1/agents", { organization: p.org, name: p.name, owner: p.owner, description: `The ${p.name} of ${p.org}`, skills: [p.skill] });
    const { token } = await as<{ token: string }>("POST", `/v1/agents/${agent.id}/credentials`, {});
    const ask = async ([action, resource]: readonly [string, string], expected: keyof Tally) => {
      const answer = await call<{ decision: string }>(base, token, "POST", "/v1/decisions", { action, resource, purpose: "console seed", skill: p.skill });
      // The counts the tests expect hold only if the reference policy still answers as planned.
      if (answer.decision !== expected) throw new Error(`${p.name} ${action} ${resource}: ${answer.decision}, not ${expected}: rego/ changed, update the console seed`);
    };
    // Interleaved, as real traffic is.
    for (let i = 0; i < Math.max(p.allows, p.denies, p.approvals); i++) {
      if (i < p.allows) await ask(p.allow, "allow");
      if (i < p.denies) await ask(p.deny, "deny");
      if ("approval" in p && i < p.approvals) await ask(p.approval, "approval_required");
    }
    seeded.agents[p.name] = { id: agent.id, org: p.org, token, skill: p.skill, allows: p.allows, denies: p.denies, approvals: p.approvals };
    seeded.totals.allow += p.allows;
    seeded.totals.deny += p.denies;
    seeded.totals.approval_required += p.approvals;
    seeded.byOrg[p.org].allow += p.allows;
    seeded.byOrg[p.org].deny += p.denies;
    seeded.byOrg[p.org].approval_required += p.approvals;
    // One approval per distinct request: the agent's later asks are answered with the open one.
    if (p.approvals > 0) {
      seeded.approvalsRequested.total += 1;
      seeded.approvalsRequested.byOrg[p.org] += 1;
    }
  }
  const key = async (name: string, role: string, organization?: string) => (await as<{ secret: string }>("POST", "/v1/api-keys", { name, role, ...(organization ? { organization } : {}) })).secret;
  seeded.keys = {
    auditor: await key("compliance", "auditor"),
    globexAuditor: await key("globex compliance", "auditor", "globex"),
    manager: await key("agent inventory", "agent_manager"),
    author: await key("security team", "policy_author"),
    // An approver key is always confined to one organisation: a chat bridge relays its humans' answers.
    acmeApprover: await key("acme change bridge", "approver", "acme"),
    globexApprover: await key("globex support bridge", "approver", "globex"),
  };
  await as("POST", "/v1/policies/2/replay", { from: new Date(Date.now() - 86_400_000).toISOString() });
  return seeded;
}
