import type { EventContent } from "../chron/record";
import type { Logger } from "../lib/logger";
import type { Serial } from "../lib/serial";
import type { SigningKeys } from "../keys/signing-keys";
import type { IdentityDirectory } from "./directory";
import type { IdentityStore } from "./identity-store";
import type { OAuthService } from "./oauth-service";

/** Events that name an identity but change nothing this process holds. */
const CHANGES_NOTHING = new Set(["token.issued"]);

/**
 * Applies the identity changes another CLAIIM process committed (see ChronFollower): the event
 * names its subject, and the subject is read again from the store, as it is now, into the
 * directory. Reading the stored state rather than replaying the event's "after" keeps one source
 * of truth, and makes applying an event twice, or late, harmless.
 *
 * WARNING: runs in the identity changes' queue, so that no change of this process reads its
 * "before" from the directory, or puts its "after" into it, while an entity is being re-read.
 */
export class IdentityFollower {
  constructor(
    private readonly directory: IdentityDirectory,
    private readonly store: IdentityStore,
    private readonly oauth: OAuthService,
    private readonly tokenKeys: SigningKeys,
    private readonly serial: Serial,
    private readonly logger: Logger,
  ) {}

  apply(event: EventContent): Promise<void> {
    if (CHANGES_NOTHING.has(event.type)) return Promise.resolve();
    const { type, id, name } = event.subject;
    switch (type) {
      case "organization":
        return this.reread(event, () => this.store.findOrganization(id), (o) => this.directory.putOrganization(o));
      case "human":
        return this.reread(event, () => this.store.findHuman(id), (h) => this.directory.putHuman(h));
      case "agent":
        return this.reread(event, () => this.store.findAgent(id), (a) => this.directory.putAgent(a));
      case "credential":
        return this.reread(event, () => this.store.findCredential(id), (c) => this.directory.putCredential(c));
      case "api_key":
        return this.reread(event, () => this.store.findApiKey(id), (k) => this.directory.putApiKey(k));
      case "client":
        return this.reread(event, () => this.store.findClient(id), (c) => this.oauth.putClient(c));
      case "signing_key":
        if (name !== this.tokenKeys.purpose) return Promise.resolve();
        return this.serial.run(async () => this.tokenKeys.load(await this.store.listSigningKeys(this.tokenKeys.purpose)));
      default:
        return Promise.resolve();
    }
  }

  private reread<T>(event: EventContent, find: () => Promise<T | null>, put: (found: T) => void): Promise<void> {
    return this.serial.run(async () => {
      const found = await find();
      // Identities are never deleted; one that is not stored was removed by hand, and is left as this process knew it.
      if (found === null) this.logger.warn("an identity named by another process's event is not stored", { type: event.type, subject: event.subject });
      else put(found);
    });
  }
}
