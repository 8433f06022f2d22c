import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { generateKeyPairSync } from "node:crypto";
import jwt from "jsonwebtoken";
import { Authenticator } from "../../src/identity/authenticator";
import { FakeIdentityStore } from "../support/fakes/identity-store";
import { SigningKeys } from "../../src/keys/signing-keys";
import { ALL, fakeChron, TESTER } from "../support/recorder";
import { identityServices, TOKEN_SETTINGS } from "../support/identity";

const settings = TOKEN_SETTINGS;

async function setup() {
  const store = new FakeIdentityStore();
  const chron = fakeChron(store);
  const { identity, credentials, apiKeys, oauth, keys, auth, directory } = await identityServices(store, chron.record);
  await identity.createOrganization({ slug: "acme", name: "Acme" }, TESTER, ALL);
  await identity.createHuman({ organization: "acme", name: "Alice", email: "alice@x.example" }, TESTER, ALL);
  const agent = await identity.registerAgent({ organization: "acme", name: "bot", description: "", owner: "alice@x.example", skills: [{ name: "deploy", version: "1.2.0" }] }, TESTER, ALL);
  const issued = await credentials.issueCredential(agent.id, undefined, TESTER, ALL);
  return { store, chron, keys, identity, credentials, apiKeys, directory, oauth, agent, issued, auth };
}

const bearer = (t: string) => `Bearer ${t}`;

describe("Authenticator", () => {
  test("an issued agent token authenticates as that agent", async () => {
    const { auth, agent, issued } = await setup();
    expect(auth.authenticate(bearer(issued.token))).toEqual({ kind: "agent", agentId: agent.id, credentialId: issued.credential.id, orgId: agent.orgId, onBehalfOf: null });
  });

  test("refuses alg none, HS256 keyed with the public key, a foreign key, and a changed payload", async () => {
    const { auth, keys, issued, agent } = await setup();
    const [h, p, sig] = issued.token.split(".");
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString("base64url")}.${p}.`;
    const pub = keys.current().publicKey.export({ format: "pem", type: "spki" }) as string;
    const hs = jwt.sign({ sub: agent.id, jti: issued.credential.id }, pub, { algorithm: "HS256", keyid: keys.current().kid, issuer: "claiim", audience: "claiim", expiresIn: 60 });
    const foreign = jwt.sign({ sub: agent.id, jti: issued.credential.id }, generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey, {
      algorithm: "ES256",
      keyid: keys.current().kid,
      issuer: "claiim",
      audience: "claiim",
      expiresIn: 60,
    });
    const changed = `${h}.${Buffer.from(JSON.stringify({ ...(jwt.decode(issued.token) as object), exp: 9999999999 })).toString("base64url")}.${sig}`;
    for (const t of [none, hs, foreign, changed]) expect(() => auth.authenticate(bearer(t))).toThrow(expect.objectContaining({ status: 401, code: "token_invalid" }));
  });

  test("revocation applies at once, even to a token whose signature was already checked", async () => {
    const { auth, credentials, agent, issued } = await setup();
    auth.authenticate(bearer(issued.token));
    await credentials.revokeCredential(agent.id, issued.credential.id, TESTER, ALL);
    expect(() => auth.authenticate(bearer(issued.token))).toThrow(expect.objectContaining({ code: "credential_revoked" }));
  });

  test("expiry applies to cached verifications too", async () => {
    const { auth, issued } = await setup();
    auth.authenticate(bearer(issued.token));
    const exp = (jwt.decode(issued.token) as { exp: number }).exp;
    const spy = jest.spyOn(Date, "now").mockReturnValue(exp * 1000 + 1);
    try {
      expect(() => auth.authenticate(bearer(issued.token))).toThrow(expect.objectContaining({ code: "token_expired" }));
    } finally {
      spy.mockRestore();
    }
  });

  test("a validly signed token for a credential CLAIIM never issued is refused", async () => {
    const { auth, keys, agent } = await setup();
    const k = keys.current();
    const t = jwt.sign({ sub: agent.id, jti: "not-issued" }, k.privateKey, { algorithm: "ES256", keyid: k.kid, issuer: "claiim", audience: "claiim", expiresIn: 60 });
    expect(() => auth.authenticate(bearer(t))).toThrow(expect.objectContaining({ code: "token_invalid" }));
  });

  test("the signing key survives a restart; the bootstrap admin is created once", async () => {
    const { store, chron, keys, issued, oauth } = await setup();
    const again = new SigningKeys("agent-token");
    const restarted = await identityServices(store, chron.record, again);
    expect(again.current().kid).toBe(keys.current().kid);
    expect((await new Authenticator(restarted.directory, oauth, again, settings).authenticate(bearer(issued.token))).kind).toBe("agent");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "claiim-auth-"));
    const file = await restarted.apiKeys.ensureBootstrapAdmin(dir);
    expect(file).toBe(path.join(dir, "bootstrap-admin.token"));
    expect(await restarted.apiKeys.ensureBootstrapAdmin(dir)).toBeNull();
    const secret = fs.readFileSync(file!, "utf8").trim();
    expect(new Authenticator(restarted.directory, oauth, again, settings).authenticate(bearer(secret))).toMatchObject({ kind: "api_key", role: "admin" });
    expect(store.apiKeys[0].secretHash).not.toBe(secret);
  });
});
