import fs from "node:fs";
import path from "node:path";
import { withoutTests } from "./policies";

const ROOT = path.resolve(__dirname, "../..");

/** What the console's browser tests seed, over real HTTP, and the counts they expect to see. */
export interface Seeded {
  agents: Record<string, { id: string; org: string; allows: number; denies: number }>;
  keys: { auditor: string; globexAuditor: string; manager: string; author: string };
  totals: { allow: number; deny: number };
  byOrg: Record<string, { allow: number; deny: number }>;
}

const PLAN = [
  { org: "acme", name: "deploy-bot", owner: "alice@acme.example", skill: { name: "deploy", version: "1.2.0" }, allow: ["deploy", "staging"], deny: ["deploy", "production"], allows: 12, denies: 5 },
  { org: "acme", name: "finance-bot", owner: "bob@acme.example", skill: { name: "finance-reporting", version: "1.0.0" }, allow: ["read_report", "report/q3"], deny: ["execute_payment", "vendor/123"], allows: 8, denies: 3 },
  { org: "globex", name: "support-bot", owner: "gus@globex.example", skill: { name: "customer-support", version: "2.1.0" }, allow: ["draft_response", "ticket/17"], deny: ["send_response", "ticket/17"], allows: 6, denies: 2 },
  { org: "globex", name: "review-bot", owner: "gus@globex.example", skill: { name: "code-review", version: "1.0.0" }, allow: ["comment_pull_request", "repo/api"], deny: ["merge_pull_request", "repo/api"], allows: 4, denies: 1 },
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
 * Two organisations, three humans, four agents and their decisions (allows and denies in known
 * numbers); keys of each role; policy version 2 (which no longer permits drafting responses to customer tickets)
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
    keys: { auditor: "", globexAuditor: "", manager: "", author: "" },
    totals: { allow: 0, deny: 0 },
    byOrg: { acme: { allow: 0, deny: 0 }, globex: { allow: 0, deny: 0 } },
  };
  for (const p of PLAN) {
    const agent = await as<{ id: string }>("POST", "/v1/agents", { organization: p.org, name: p.name, owner: p.owner, description: `The ${p.name} of ${p.org}`, skills: [p.skill] });
    const { token } = await as<{ token: string }>("POST", `/v1/agents/${agent.id}/credentials`, {});
    const ask = ([action, resource]: readonly [string, string]) => call(base, token, "POST", "/v1/decisions", { action, resource, purpose: "console seed", skill: p.skill });
    // Interleaved, as real traffic is.
    for (let i = 0; i < Math.max(p.allows, p.denies); i++) {
      if (i < p.allows) await ask(p.allow);
      if (i < p.denies) await ask(p.deny);
    }
    seeded.agents[p.name] = { id: agent.id, org: p.org, allows: p.allows, denies: p.denies };
    seeded.totals.allow += p.allows;
    seeded.totals.deny += p.denies;
    seeded.byOrg[p.org].allow += p.allows;
    seeded.byOrg[p.org].deny += p.denies;
  }
  const key = async (name: string, role: string, organization?: string) => (await as<{ secret: string }>("POST", "/v1/api-keys", { name, role, ...(organization ? { organization } : {}) })).secret;
  seeded.keys = {
    auditor: await key("compliance", "auditor"),
    globexAuditor: await key("globex compliance", "auditor", "globex"),
    manager: await key("agent inventory", "agent_manager"),
    author: await key("security team", "policy_author"),
  };
  await as("POST", "/v1/policies/2/replay", { from: new Date(Date.now() - 86_400_000).toISOString() });
  return seeded;
}
