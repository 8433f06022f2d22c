import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { databaseKinds, freshDatabase } from "../support/databases";
import { nodeEnv, startClaiimProcess } from "../support/process";
import { accessToken, DEPLOY_SKILL, registerDeployBot } from "../support/agents";
import { withDatabase } from "../support/global-setup";

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, "../..");
const PYTHON = process.env.CLAIIM_TEST_PYTHON ?? path.join(ROOT, ".tools/venv/bin/python");

/** The compose file as Compose reads it (YAML anchors resolved), read with PyYAML from the test venv. */
function compose(): { services: Record<string, { command?: string[]; environment?: Record<string, string>; healthcheck?: { test: string[] }; restart?: string; depends_on?: Record<string, { condition: string }>; stop_grace_period?: string; volumes?: string[]; ports?: string[] }> } {
  const json = execFileSync(PYTHON, ["-c", "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)", path.join(ROOT, "docker-compose.yml")], { encoding: "utf8" });
  return JSON.parse(json);
}

/** The Dockerfile's stages, each with its instructions (continuation lines joined). */
function dockerStages(): { from: string; lines: string[] }[] {
  const text = fs.readFileSync(path.join(ROOT, "Dockerfile"), "utf8").replace(/\\\n\s*/g, " ");
  const stages: { from: string; lines: string[] }[] = [];
  for (const line of text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"))) {
    if (line.startsWith("FROM ")) stages.push({ from: line.slice(5), lines: [] });
    else stages[stages.length - 1].lines.push(line);
  }
  return stages;
}

// Docker itself is not on the test machines: what can be checked without it is checked here, and
// the database setup compose runs (migrations as the owner, CLAIIM as the limited role) runs for real.
describe("the container and compose files", () => {
  test("the image runs on the Node.js LTS line that package.json supports, as a non-root user, healthy only when /readyz says ready", () => {
    const stages = dockerStages();
    const runtime = stages[stages.length - 1];
    const [, lts, release] = /^node:((\d+)\.\d+\.\d+)-bookworm-slim$/.exec(runtime.from) ?? [];
    expect(release).toBe("24");
    // make test-lts runs the tests on the very release the image is built on.
    expect(fs.readFileSync(path.join(ROOT, "scripts/test-lts.sh"), "utf8")).toContain(`LTS_VERSION="\${CLAIIM_LTS_NODE_VERSION:-${lts}}"`);
    expect(stages.find((s) => s.from.endsWith(" AS build"))?.from).toBe(`node:${lts}-bookworm-slim AS build`);
    const engines = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")).engines.node as string;
    expect(engines.split("||").map((r) => r.trim())).toContain(`>=${release}`);
    // Multi-stage: the runtime image has no compiler, and copies what the build made.
    expect(runtime.lines.some((l) => /apt-get install/.test(l))).toBe(false);
    expect(runtime.lines.filter((l) => l.startsWith("COPY --from=build")).length).toBeGreaterThan(3);
    const user = runtime.lines.filter((l) => l.startsWith("USER "));
    expect(user).toEqual(["USER node"]);
    const health = runtime.lines.find((l) => l.startsWith("HEALTHCHECK "));
    expect(health).toMatch(/\/readyz/);
    expect(health).toMatch(/r\.ok\?0:1/);
  });

  test("compose: PostgreSQL checked over TCP, migrations by the owner once, three replicas as the limited role, restarted unless stopped, behind HAProxy", () => {
    const { services } = compose();
    expect(services.postgres.healthcheck!.test).toEqual(expect.arrayContaining(["pg_isready", "-h"]));
    expect(services.migrate.command).toEqual(["bash", "scripts/migrate-postgres.sh"]);
    expect(services.migrate.depends_on).toEqual({ postgres: { condition: "service_healthy" } });
    const replicas = ["claiim-1", "claiim-2", "claiim-3"];
    // The first replica alone makes what a first start makes (the Chron key, the bootstrap credential); the others wait until it is ready.
    expect(services["claiim-1"].depends_on).toEqual({ migrate: { condition: "service_completed_successfully" } });
    for (const name of replicas.slice(1)) expect(services[name].depends_on).toEqual({ "claiim-1": { condition: "service_healthy" } });
    const owner = new URL(services.migrate.environment!.DATABASE_URL);
    for (const name of replicas) {
      const replica = services[name];
      expect(replica.restart).toBe("unless-stopped");
      const app = new URL(replica.environment!.DATABASE_URL);
      expect(app.username).toBe(services.migrate.environment!.CLAIIM_APP_ROLE);
      expect(app.password).toBe(services.migrate.environment!.CLAIIM_APP_PASSWORD);
      expect(app.username).not.toBe(owner.username);
      // The image's CMD migrates; the limited role may not, so compose runs CLAIIM directly.
      expect(replica.command).toEqual(["node", "dist/src/main.js"]);
      // Docker waits longer than CLAIIM's own bound before it kills.
      expect(parseInt(replica.stop_grace_period!, 10)).toBeGreaterThan(Number(replica.environment!.CLAIIM_SHUTDOWN_TIMEOUT_SECONDS));
      // One data volume (the Chron key, the bootstrap credential), a witness log each, no port of its own.
      expect(replica.volumes).toEqual(["claiim-data:/app/data", `${name}-witness:/app/witness`]);
      expect(replica.environment!.CLAIIM_WITNESS_DIR).toBe("/app/witness");
      expect(replica.ports).toBeUndefined();
    }
    // The balancer is the only way in, and checks each replica's readiness more often than a stopping one keeps serving.
    expect(services.lb.ports).toEqual(["8080:8080"]);
    expect(services.lb.volumes).toEqual(["./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]);
    const cfg = fs.readFileSync(path.join(ROOT, "deploy/haproxy.cfg"), "utf8");
    const [, inter, fall] = /default-server check inter (\d+)s fall (\d+)/.exec(cfg) ?? [];
    for (const name of replicas) {
      expect(Number(services[name].environment!.CLAIIM_SHUTDOWN_DELAY_SECONDS)).toBeGreaterThan(Number(inter) * Number(fall));
      expect(cfg).toContain(`server ${name} ${name}:8080`);
    }
    // The image makes witness/ for the node user (a volume mounted there takes its owner).
    expect(dockerStages().pop()!.lines).toContain("RUN mkdir -p data bundles witness && chown node:node data bundles witness");
  });
});

const onPostgres = databaseKinds().includes("postgresql") ? describe : describe.skip;

onPostgres("compose's database setup on PostgreSQL, run for real", () => {
  test("scripts/migrate-postgres.sh as the owner, then CLAIIM as the limited role: it decides and records, and cannot change Chron even with the triggers off", async () => {
    const dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "roles-"));
    const database = await freshDatabase("postgresql", dir);
    const role = `claiim_app_${randomBytes(4).toString("hex")}`;
    const password = randomBytes(12).toString("base64url");
    const ownerUrl = database.url;
    const appUrl = Object.assign(new URL(ownerUrl), { username: role, password }).toString();
    const migrate = () => run("bash", ["scripts/migrate-postgres.sh"], { cwd: ROOT, env: { ...nodeEnv(), PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: ownerUrl, CLAIIM_APP_ROLE: role, CLAIIM_APP_PASSWORD: password } });
    const dropRole = async () => {
      const c = new pg.Client({ connectionString: withDatabase(process.env.CLAIIM_TEST_PG_URL!, "postgres") });
      await c.connect();
      await c.query(`DROP ROLE IF EXISTS "${role}"`);
      await c.end();
    };
    let p: Awaited<ReturnType<typeof startClaiimProcess>> | null = null;
    try {
      expect((await migrate()).stdout).toContain(`${role} may use CLAIIM's tables; it may not change or delete Chron`);
      // Again, as after an upgrade: the role exists, its grants are made again.
      await migrate();

      p = await startClaiimProcess("postgresql", { DATABASE_URL: appUrl }, database);
      const bot = await registerDeployBot(p);
      const res = await p.http.post("/v1/decisions").set({ Authorization: `Bearer ${await accessToken(p, bot)}` }).send({ action: "deploy", resource: "staging", purpose: "release", skill: DEPLOY_SKILL }).expect(200);
      expect(res.body.decision).toBe("allow");

      const app = new pg.Client({ connectionString: appUrl });
      await app.connect();
      try {
        expect(Number((await app.query("SELECT COUNT(*) AS n FROM chron_records WHERE id = $1", [res.body.decision_id])).rows[0].n)).toBe(1);
        await expect(app.query("UPDATE chron_records SET content = '{}' WHERE id = $1", [res.body.decision_id])).rejects.toThrow(/permission denied/);
        await expect(app.query("DELETE FROM chron_records")).rejects.toThrow(/permission denied/);
        await expect(app.query("TRUNCATE chron_checkpoints")).rejects.toThrow(/permission denied/);
        await expect(app.query("ALTER TABLE chron_records DISABLE TRIGGER USER")).rejects.toThrow(/must be owner/);
        await expect(app.query("SELECT * FROM _prisma_migrations")).rejects.toThrow(/permission denied/);
      } finally {
        await app.end();
      }
      expect((await p.http.get("/v1/chron/verify").set({ Authorization: `Bearer ${p.admin}` })).body.valid).toBe(true);
      const roles = (appRole: string) => run("node", ["scripts/postgres-roles.mjs"], { cwd: ROOT, env: { ...nodeEnv(), PATH: process.env.PATH, DATABASE_URL: ownerUrl, CLAIIM_APP_ROLE: appRole, CLAIIM_APP_PASSWORD: "x" } });
      await expect(roles("Robert'); DROP TABLE x;--")).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/CLAIIM_APP_ROLE must be a lower-case role name/) });
      // A role that may create databases (the owner here) is no limited role: refused, not granted.
      await expect(roles(new URL(ownerUrl).username)).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/exists with SUPERUSER, CREATEROLE, CREATEDB or BYPASSRLS/) });
    } finally {
      if (p) await p.stop();
      else await database.drop();
      await dropRole();
    }
  });
});
