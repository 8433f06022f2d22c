// Identity's part of the object graph: the in-memory directory and the services that change it,
// token minting shared by agent credentials and OAuth, and the authenticator.
import type { Config } from "../config";
import type { Logger } from "../lib/logger";
import { Serial } from "../lib/serial";
import { SigningKeys } from "../keys/signing-keys";
import type { Recorder } from "../chron/chron-store";
import { IdentityDirectory } from "../identity/directory";
import { IdentityFollower } from "../identity/follower";
import { IdentityService } from "../identity/identity-service";
import { CredentialService } from "../identity/credential-service";
import { ApiKeyService } from "../identity/api-key-service";
import { TokenMinter } from "../identity/tokens";
import { OAuthService } from "../identity/oauth-service";
import { OidcVerifier } from "../identity/oidc";
import { Authenticator } from "../identity/authenticator";
import type { IdentityStore } from "../identity/identity-store";

export function identityPart(config: Config, stores: { identity: IdentityStore }, record: Recorder, logger: Logger, ensureFresh: () => void | Promise<void>) {
  const tokenSettings = { issuer: config.issuer, audience: config.audience, agentTokenTtlSeconds: config.agentTokenTtlSeconds };
  // Identity changes of every kind go one at a time, so that each one's "before" is exact.
  const serial = new Serial();
  const directory = new IdentityDirectory();
  const identity = new IdentityService(directory, stores.identity, record, logger, serial);
  const tokenKeys = new SigningKeys("agent-token");
  const minter = new TokenMinter(tokenKeys, tokenSettings);
  const credentials = new CredentialService(identity, stores.identity, tokenKeys, minter, record, logger, serial);
  const apiKeys = new ApiKeyService(directory, stores.identity, record, serial);
  const oauthSettings = {
    issuer: config.issuer,
    audience: config.audience,
    accessTokenTtlSeconds: config.accessTokenTtlSeconds,
    clockSkewSeconds: config.clockSkewSeconds,
    tokenEndpoint: `${config.publicUrl}/oauth/token`,
  };
  const oauth = new OAuthService(stores.identity, directory, minter, oauthSettings, record, logger, serial);
  // WARNING: no authenticated request is answered from state older than the bound (503 state_stale).
  const authenticator = new Authenticator(directory, oauth, tokenKeys, tokenSettings, config.oidc ? new OidcVerifier(config.oidc, directory) : null, ensureFresh);
  const follower = new IdentityFollower(directory, stores.identity, oauth, tokenKeys, serial, logger);
  return { directory, identity, credentials, apiKeys, oauth, minter, authenticator, follower };
}
