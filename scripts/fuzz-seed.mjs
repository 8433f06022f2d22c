// Seeds a fresh CLAIIM for fuzzing: an organisation, a human, an agent with a credential.
// Prints `agent_token=…` and `admin_key_id=…` (the key the fuzzer runs with, which it must never revoke).
const [url, admin] = process.argv.slice(2);
async function call(method, path, body, token = admin) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}
await call("POST", "/v1/organizations", { slug: "acme", name: "Acme" });
await call("POST", "/v1/humans", { organization: "acme", name: "Alice", email: "alice@acme.example" });
const agent = await call("POST", "/v1/agents", { organization: "acme", name: "deploy-bot", owner: "alice@acme.example", skills: [{ name: "deploy", version: "1.2.0" }] });
const { token } = await call("POST", `/v1/agents/${agent.id}/credentials`, {});
await call("POST", "/v1/decisions", { action: "deploy", resource: "staging", purpose: "seed", skill: { name: "deploy", version: "1.2.0" } }, token);
const keys = await call("GET", "/v1/api-keys");
const own = keys.api_keys.find((k) => k.name === "bootstrap administrator");
console.log(`agent_token=${token}`);
console.log(`admin_key_id=${own.id}`);
