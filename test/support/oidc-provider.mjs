// A real OpenID Connect provider (panva's oidc-provider) on loopback, for the console's sign-in
// test: authorization code with PKCE for a public client, JWT access tokens for CLAIIM's audience
// (RFC 8707 resource indicator) carrying claiim_roles and claiim_org.
//
// node test/support/oidc-provider.mjs <port> <redirect_uri> <resource>
// Prints "ready <issuer>" once it listens.
import { generateKeyPairSync } from "node:crypto";
import Provider from "oidc-provider";

const [port, redirectUri, resource] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "test-rsa-1", use: "sig", alg: "RS256" };
// The people of this provider: whoever signs in as "alice" is an auditor of acme; "olga" is a
// human of acme with no CLAIIM role (she answers the approvals that name her, as accountable human).
const PEOPLE = {
  alice: { name: "Alice Auditor", email: "alice@acme.example", roles: ["auditor"], org: "acme" },
  olga: { name: "Olga Ops", email: "olga@acme.example", roles: [], org: "acme" },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "claiim-console",
      token_endpoint_auth_method: "none",
      application_type: "web",
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code"],
      response_types: ["code"],
    },
  ],
  jwks: { keys: [jwk] },
  cookies: { keys: ["console-test-cookie-key"] },
  pkce: { required: () => true },
  claims: { openid: ["sub"], profile: ["name"], email: ["email"] },
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) throw new Provider.errors.InvalidTarget();
        return { scope: "claiim", audience: resource, accessTokenFormat: "jwt", accessTokenTTL: 600, jwt: { sign: { alg: "RS256" } } };
      },
    },
  },
  clientBasedCORS: (_ctx, origin, client) => client.redirectUris.some((uri) => new URL(uri).origin === origin),
  findAccount: (_ctx, id) => {
    const person = PEOPLE[id];
    if (!person) return undefined;
    return { accountId: id, claims: () => ({ sub: id, name: person.name, email: person.email }) };
  },
  extraTokenClaims: (_ctx, token) => {
    const person = PEOPLE[token.accountId];
    return person ? { name: person.name, email: person.email, claiim_roles: person.roles, claiim_org: person.org } : undefined;
  },
  // A first-party client: the grant is given without a consent screen.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope("openid profile email");
    grant.addResourceScope(resource, "claiim");
    await grant.save();
    return grant;
  },
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 600, Grant: 600 },
});

provider.listen(Number(port), "127.0.0.1", () => console.log(`ready ${issuer}`));
