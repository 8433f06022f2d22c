#!/usr/bin/env node
// Publishes a folder of policy files (by default rego/) as a new CLAIIM policy version.
//
//   node scripts/publish-policy.mjs [--dir rego] [--message "why"] [--activate | --shadow]
//                                   [--url http://127.0.0.1:8080] [--token-file data/bootstrap-admin.token]
//
// --shadow sets the new version as the shadow of the active one: evaluated on every decision,
// never enforced, its disagreements recorded in Chron (GET /v1/policies/shadow/report).
//
// The credential comes from CLAIIM_TOKEN, else from --token-file. Exit status: 0 published,
// 1 refused (OPA's errors or failing tests are printed), 2 misuse.
import fs from "node:fs";
import path from "node:path";

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const dir = opt("dir", "rego");
const url = (opt("url", process.env.CLAIIM_URL ?? "http://127.0.0.1:8080")).replace(/\/+$/, "");
const message = opt("message", `published from ${dir}/`);
const tokenFile = opt("token-file", "data/bootstrap-admin.token");
const token = process.env.CLAIIM_TOKEN ?? (fs.existsSync(tokenFile) ? fs.readFileSync(tokenFile, "utf8").trim() : null);
if (!token) {
  console.error(`publish-policy: set CLAIIM_TOKEN or give --token-file (no ${tokenFile})`);
  process.exit(2);
}
if (args.includes("--activate") && args.includes("--shadow")) {
  console.error("publish-policy: --activate and --shadow exclude each other");
  process.exit(2);
}
if (!fs.existsSync(dir)) {
  console.error(`publish-policy: no folder ${dir}`);
  process.exit(2);
}

const files = {};
const walk = (rel) => {
  for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const name = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) walk(name);
    else if (entry.isFile() && /\.(rego|json|ya?ml)$/.test(entry.name)) files[name] = fs.readFileSync(path.join(dir, name), "utf8");
  }
};
walk("");

const res = await fetch(`${url}/v1/policies`, {
  method: "POST",
  headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  body: JSON.stringify({ files, message, activate: args.includes("--activate") }),
});
const body = await res.json();
if (res.status === 201) {
  console.log(`published version ${body.version} (${body.revision})${body.active ? ", active" : ""}; parent ${body.parent ?? "none"}`);
  for (const w of body.warnings ?? []) console.log(`warning: ${w.file}: ${w.message}\n${w.diff ?? ""}`);
  if (!args.includes("--shadow")) process.exit(0);
  const shadow = await fetch(`${url}/v1/policies/shadow`, {
    method: "PUT",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ version: body.version }),
  });
  const set = await shadow.json();
  if (shadow.ok) {
    console.log(`version ${set.version} is the shadow since ${set.since}; report: ${url}/v1/policies/shadow/report`);
    process.exit(0);
  }
  console.error(`published, but not set as the shadow (${shadow.status} ${set.code}): ${set.detail}`);
  process.exit(1);
}
console.error(`refused (${res.status} ${body.code}): ${body.detail}`);
for (const e of body.opa_errors ?? []) console.error(`  ${e.file}:${e.row}:${e.col}: ${e.code}: ${e.message}`);
for (const t of body.failing_tests ?? []) console.error(`  failing test ${t.name} at ${t.file}:${t.row}`);
process.exit(1);
