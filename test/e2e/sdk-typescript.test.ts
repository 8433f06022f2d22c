import { exportJWK, generateKeyPair } from "jose";
import { AuthenticationError, Claiim, DeniedError, type Decision } from "@claiim/sdk";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { decisionRecords, DEPLOY_SKILL, registerDeployBot, type TestAgent } from "../support/agents";
import { startLossyProxy, type LossyProxy } from "../support/lossy-proxy";
import { failWrites } from "../support/sql";

const TOKEN_TTL_SECONDS = 2;
const staging = { action: "deploy", resource: "staging", purpose: "release 1.4.0", skill: DEPLOY_SKILL };
/** No rule of the deploy skill permits it: a plain deny (production asks for a human's approval; see sdk-approvals.test.ts). */
const forbidden = { ...staging, resource: "mainframe" };
const FORBIDDEN_REASON = 'no rule permits action "deploy" on resource "mainframe" under skill "deploy"';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(databaseKinds())("the TypeScript SDK against CLAIIM on %s", (kind) => {
  let s: TestServer;
  let bot: TestAgent;
  let proxy: LossyProxy;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  const client = (over: Partial<ConstructorParameters<typeof Claiim>[0]> = {}) =>
    new Claiim({ url: s.claiim.url, clientId: bot.clientId, clientSecret: bot.clientSecret, retry: { baseDelayMs: 20, maxDelayMs: 200 }, ...over });
  const tokenEvents = async () =>
    (await s.http.get(`/v1/chron/records?kind=event&agent=${bot.agentId}&limit=1000`).set(admin()).expect(200)).body.records.filter((r: { type: string }) => r.type === "token.issued").length;

  beforeAll(async () => {
    s = await startTestServer(kind, { env: { CLAIIM_ACCESS_TOKEN_TTL_SECONDS: String(TOKEN_TTL_SECONDS) } });
    bot = await registerDeployBot(s);
    proxy = await startLossyProxy(s.claiim.url);
  });
  afterAll(async () => {
    await proxy?.close();
    await s?.stop();
  });

  test("allow: guard runs the action, and the decision is in Chron with its idempotency key", async () => {
    const claiim = client();
    let seen: Decision | null = null;
    const result = await claiim.guard(staging, (d) => ((seen = d), "deployed"));
    expect(result).toBe("deployed");
    expect(seen).toMatchObject({ decision: "allow", allowed: true, replayed: false, reasons: [{ message: 'skill "deploy" permits "deploy" on "staging"', code: "permitted_by_skill" }] });
    const records = await decisionRecords(s, bot.agentId);
    const record = records.find((r) => r.decision_id === seen!.decisionId)!;
    expect(record).toMatchObject({ decision: "allow", seq: seen!.chron!.seq, hash: seen!.chron!.hash, idempotency_key: expect.stringMatching(/^[0-9a-f-]{36}$/) });
  });

  test("deny: guard throws DeniedError with the reasons, their codes and the decision_id, and never runs the action", async () => {
    let ran = false;
    const err = await client()
      .guard(forbidden, () => (ran = true))
      .catch((e: unknown) => e);
    expect(ran).toBe(false);
    expect(err).toBeInstanceOf(DeniedError);
    const denied = err as DeniedError;
    expect(denied.reasons).toEqual([{ message: FORBIDDEN_REASON, code: "no_rule_permits" }]);
    expect(denied.approval).toBeNull();
    const record = (await decisionRecords(s, bot.agentId)).find((r) => r.decision_id === denied.decisionId);
    expect(record).toMatchObject({ decision: "deny", resource: "mainframe", reason_codes: ["no_rule_permits"] });
    // decide() itself reports a deny as a decision, not an error.
    expect(await client().decide(forbidden)).toMatchObject({ decision: "deny", allowed: false });
  });

  test("the token is refreshed across its expiry, one fetch at a time", async () => {
    const before = await tokenEvents();
    const claiim = client();
    const first = await Promise.all(Array.from({ length: 10 }, () => claiim.decide(staging)));
    expect(first.every((d) => d.allowed)).toBe(true);
    expect(claiim.tokenFetches).toBe(1);
    await sleep(TOKEN_TTL_SECONDS * 1000 + 300);
    expect((await claiim.decide(staging)).allowed).toBe(true);
    expect(claiim.tokenFetches).toBe(2);
    expect(await tokenEvents()).toBe(before + 2);
  });

  test("a token CLAIIM refuses (401) is replaced once, and the call goes on", async () => {
    let corrupt = true;
    const claiim = client({
      fetch: ((url: string, init: RequestInit) => {
        const headers = { ...(init.headers as Record<string, string>) };
        if (corrupt && url.endsWith("/v1/decisions")) {
          corrupt = false;
          headers.Authorization = `${headers.Authorization}x`;
        }
        return fetch(url, { ...init, headers });
      }) as typeof fetch,
    });
    expect((await claiim.decide(staging)).allowed).toBe(true);
    expect(claiim.tokenFetches).toBe(2);
  });

  test("private_key_jwt: the agent's key signs assertions here and never leaves it", async () => {
    const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
    const jwk = await exportJWK(publicKey);
    const registered = (await s.http.post(`/v1/agents/${bot.agentId}/clients`).set(admin()).send({ method: "private_key_jwt", jwk }).expect(201)).body;
    const privateJwk = await exportJWK(privateKey);
    const sent: string[] = [];
    const claiim = new Claiim({
      url: s.claiim.url,
      clientId: registered.client_id,
      privateKey: privateJwk,
      // CLAIIM's issuer: this test server's public URL is not the ephemeral one it listens on.
      assertionAudience: "claiim",
      fetch: ((url: string, init: RequestInit) => (sent.push(String(init.body ?? "")), fetch(url, init))) as typeof fetch,
    });
    expect((await claiim.decide(staging)).allowed).toBe(true);
    expect(sent.join("\n")).not.toContain(privateJwk.d!);
    expect(sent[0]).toContain("client_assertion=");
  });

  test("a lost answer (503 or a reset connection) is retried with the same key: exactly one Chron record", async () => {
    for (const how of ["503", "reset"] as const) {
      const claiim = client({ url: proxy.url });
      await claiim.accessToken();
      const seen = proxy.decisionKeys.length;
      proxy.loseNext(2, how);
      const decision = await claiim.decide(forbidden);
      expect(decision).toMatchObject({ decision: "deny", replayed: true });
      const keys = proxy.decisionKeys.slice(seen);
      expect(keys).toHaveLength(3);
      expect(new Set(keys).size).toBe(1);
      const key = JSON.parse(keys[0]) as string;
      const recorded = (await decisionRecords(s, bot.agentId)).filter((r) => r.idempotency_key === key);
      expect(recorded).toHaveLength(1);
      expect(recorded[0].decision_id).toBe(decision.decisionId);
    }
  });

  test("CLAIIM's own 503 (Chron cannot record) is retried until it can: one decision, recorded once", async () => {
    let failures = 0;
    let undo: (() => Promise<void>) | null = null;
    const claiim = client({
      fetch: (async (url: string, init: RequestInit) => {
        const res = await fetch(url, init);
        if (res.status === 503 && ++failures === 1) await undo!();
        return res;
      }) as typeof fetch,
    });
    await claiim.accessToken();
    undo = await failWrites(s.claiim.db, "chron_records", "INSERT");
    const decision = await claiim.decide(staging).catch(async (err) => {
      if (failures === 0) await undo!();
      throw err;
    });
    expect(failures).toBe(1);
    expect(decision).toMatchObject({ allowed: true, replayed: false });
    expect((await decisionRecords(s, bot.agentId)).filter((r) => r.decision_id === decision.decisionId)).toHaveLength(1);
  });

  test("a revoked client: the next call fails authentication, and nothing more is decided", async () => {
    const claiim = client();
    expect((await claiim.decide(staging)).allowed).toBe(true);
    const before = (await decisionRecords(s, bot.agentId)).length;
    await s.http.delete(`/v1/agents/${bot.agentId}/clients/${bot.clientId}`).set(admin()).expect(200);
    const err = await claiim.guard(staging, () => "ran").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthenticationError);
    expect(err).toMatchObject({ code: "client_revoked", status: 401 });
    expect((await decisionRecords(s, bot.agentId)).length).toBe(before);
  });
});
