import { randomUUID } from "node:crypto";
import type { Recorder } from "../chron/chron-store";
import { recordKeyCreation } from "../chron/key-events";
import type { EventContent } from "../chron/record";
import { NotAllowedError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import type { Serial } from "../lib/serial";
import { generate, loadOrCreateKeys, type SigningKeys } from "../keys/signing-keys";
import type { Actor, Scope } from "../shared/principal";
import { notFound, type IdentityDirectory } from "./directory";
import { credentialState, identityEvent } from "./events";
import type { IdentityService } from "./identity-service";
import type { IdentityStore } from "./identity-store";
import type { Agent, AgentCredential } from "./model";
import type { TokenMinter } from "./tokens";

/**
 * Agents' long-lived credentials (ES256 JWTs, shown once; CLAIIM keeps only their id) and the
 * rotation of the key that signs every agent token. Changes are recorded in Chron with the change,
 * one at a time with the other identity changes.
 */
export class CredentialService {
  constructor(
    private readonly identity: IdentityService,
    private readonly store: IdentityStore,
    private readonly keys: SigningKeys,
    private readonly minter: TokenMinter,
    private readonly record: Recorder,
    private readonly logger: Logger,
    private readonly serial: Serial,
  ) {}

  private get directory(): IdentityDirectory {
    return this.identity.directory;
  }

  /** Loads the token-signing keys, making the first one on a new database. */
  start(): Promise<void> {
    return loadOrCreateKeys(this.keys, this.store, recordKeyCreation(this.record));
  }

  issueCredential(agentId: string, ttlSeconds: number | undefined, actor: Actor, scope: Scope): Promise<{ credential: AgentCredential; token: string }> {
    return this.serial.run(async () => {
      const agent = this.identity.liveAgent(agentId, scope);
      const ttl = ttlSeconds ?? this.minter.settings.agentTokenTtlSeconds;
      const now = new Date();
      const credential: AgentCredential = { id: randomUUID(), agentId, kid: this.minter.currentKid(), createdAt: now, expiresAt: new Date(now.getTime() + ttl * 1000), revokedAt: null };
      const token = this.minter.mint({ org: agent.orgId, name: agent.name }, { subject: agentId, jwtid: credential.id, ttlSeconds: ttl });
      await this.record([this.credentialEvent("credential.issued", actor, agent, null, credential)], (tx) => this.store.saveCredential(credential, tx));
      this.directory.putCredential(credential);
      return { credential, token };
    });
  }

  revokeCredential(agentId: string, credentialId: string, actor: Actor, scope: Scope): Promise<AgentCredential> {
    return this.serial.run(async () => {
      const agent = this.directory.agent(agentId, scope);
      const before = this.directory.credential(credentialId);
      if (!before || before.agentId !== agentId) throw notFound("credential", credentialId);
      if (before.revokedAt) return before;
      const revoked = { ...before, revokedAt: new Date() };
      await this.record([this.credentialEvent("credential.revoked", actor, agent, before, revoked)], (tx) => this.store.saveCredential(revoked, tx));
      this.directory.putCredential(revoked);
      this.logger.info("agent credential revoked", { agent_id: agentId, credential_id: credentialId });
      return revoked;
    });
  }

  /**
   * A new signing key takes over now; the previous one keeps verifying, and stays in the JWKS,
   * for `overlapSeconds`, so that the tokens it signed go on working until then.
   */
  rotateSigningKey(overlapSeconds: number, reason: string | null, actor: Actor, scope: Scope): Promise<{ kid: string; previous: { kid: string; retires_at: string } }> {
    return this.serial.run(async () => {
      if (scope.orgId !== null) throw new NotAllowedError("organization_scope", "signing keys serve every organisation; only a key not confined to one may rotate them");
      const stored = await this.store.listSigningKeys(this.keys.purpose);
      const old = stored.filter((k) => k.retiredAt === null);
      const retiresAt = new Date(Date.now() + overlapSeconds * 1000);
      const retiring = old.map((k) => ({ ...k, retiredAt: retiresAt }));
      const fresh = generate(this.keys.purpose);
      const event = identityEvent(
        "signing_key.rotated",
        actor,
        { type: "signing_key", id: fresh.kid, name: fresh.purpose },
        null,
        null,
        { signing_kid: old.map((k) => k.kid).pop() ?? null },
        { signing_kid: fresh.kid, retiring: retiring.map((k) => ({ kid: k.kid, retires_at: retiresAt.toISOString() })) },
        reason,
      );
      await this.record([event], async (tx) => {
        for (const k of retiring) await this.store.saveSigningKey(k, tx);
        await this.store.saveSigningKey(fresh, tx);
      });
      this.keys.load([...stored.filter((k) => k.retiredAt !== null), ...retiring, fresh]);
      this.logger.info("signing key rotated", { kid: fresh.kid, previous: old.map((k) => k.kid), retires_at: retiresAt.toISOString() });
      return { kid: fresh.kid, previous: { kid: old.map((k) => k.kid).pop() ?? "", retires_at: retiresAt.toISOString() } };
    });
  }

  private credentialEvent(type: string, actor: Actor, agent: Agent, before: AgentCredential | null, after: AgentCredential): EventContent {
    const ctx = this.directory.agentContext(agent.id);
    return identityEvent(type, actor, { type: "credential", id: after.id, name: agent.name }, ctx?.organization ?? null, { agent, owner: ctx?.owner ?? null }, before && credentialState(before), credentialState(after));
  }
}
