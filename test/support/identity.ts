import type { Recorder } from "../../src/chron/chron-store";
import { ApiKeyService } from "../../src/identity/api-key-service";
import { Authenticator } from "../../src/identity/authenticator";
import { CredentialService } from "../../src/identity/credential-service";
import { IdentityDirectory } from "../../src/identity/directory";
import type { IdentityStore } from "../../src/identity/identity-store";
import { IdentityService } from "../../src/identity/identity-service";
import { OAuthService } from "../../src/identity/oauth-service";
import { TokenMinter, type TokenSettings } from "../../src/identity/tokens";
import { SigningKeys } from "../../src/keys/signing-keys";
import { createLogger } from "../../src/lib/logger";
import { Serial } from "../../src/lib/serial";

export const TOKEN_SETTINGS: TokenSettings = { issuer: "claiim", audience: "claiim", agentTokenTtlSeconds: 600 };

/** The identity services wired as the core wires them, on a store and a recorder of the test's, started. */
export async function identityServices(store: IdentityStore, record: Recorder, keys = new SigningKeys("agent-token"), settings = TOKEN_SETTINGS) {
  const logger = createLogger("silent");
  const serial = new Serial();
  const directory = new IdentityDirectory();
  const identity = new IdentityService(directory, store, record, logger, serial);
  const minter = new TokenMinter(keys, settings);
  const credentials = new CredentialService(identity, store, keys, minter, record, logger, serial);
  const apiKeys = new ApiKeyService(directory, store, record, serial);
  const oauth = new OAuthService(store, directory, minter, { ...settings, accessTokenTtlSeconds: 300, clockSkewSeconds: 60, tokenEndpoint: "http://claiim.test/oauth/token" }, record, logger, serial);
  await credentials.start();
  await directory.load(store);
  await oauth.start();
  return { directory, identity, credentials, apiKeys, oauth, keys, auth: new Authenticator(directory, oauth, keys, settings) };
}
