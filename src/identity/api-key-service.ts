import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { Recorder } from "../chron/chron-store";
import { InputError, NotAllowedError } from "../lib/errors";
import type { Serial } from "../lib/serial";
import { ALL_ORGANIZATIONS, SYSTEM, type Actor, type Role, type Scope } from "../shared/principal";
import { notFound, type IdentityDirectory } from "./directory";
import { apiKeyState, identityEvent } from "./events";
import type { IdentityStore } from "./identity-store";
import type { ApiKey } from "./model";
import { hashSecret, newApiKeySecret } from "./secrets";

/**
 * API keys (a role, optionally confined to one organisation; the secret shown once, stored
 * hashed) and the bootstrap administrator key of a new database.
 */
export class ApiKeyService {
  constructor(
    private readonly directory: IdentityDirectory,
    private readonly store: IdentityStore,
    private readonly record: Recorder,
    private readonly serial: Serial,
  ) {}

  /**
   * A key of `role`, confined to one organisation or (for a caller that spans all) to none. A
   * caller confined to an organisation can only create keys confined to it.
   */
  createApiKey(
    input: { name: string; role: Role; organization: string | null; expiresAt: Date | null; reason?: string },
    actor: Actor,
    scope: Scope,
    secret: { prefix: string; secret: string } = newApiKeySecret(),
  ): Promise<{ key: ApiKey; secret: string }> {
    return this.serial.run(async () => {
      const org = input.organization ? this.directory.organizationBySlug(input.organization, scope) : null;
      if (scope.orgId !== null && !org) throw new NotAllowedError("organization_scope", "a key confined to one organisation can only create keys confined to it");
      // An approver answers for one organisation's humans: its key is always confined to it.
      if (input.role === "approver" && !org) {
        throw new InputError("approver_key_needs_organization", "an approver key must be confined to one organisation", [{ path: "organization", message: "required for role approver" }]);
      }
      if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) {
        throw new InputError("expiry_in_past", "expires_at must be in the future", [{ path: "expires_at", message: "in the past" }]);
      }
      const key: ApiKey = {
        id: randomUUID(),
        name: input.name,
        prefix: secret.prefix,
        secretHash: hashSecret(secret.secret),
        role: input.role,
        orgId: org?.id ?? null,
        createdAt: new Date(),
        expiresAt: input.expiresAt,
        revokedAt: null,
      };
      await this.record([identityEvent("api_key.created", actor, { type: "api_key", id: key.id, name: key.name }, org, null, null, apiKeyState(key), input.reason ?? null)], (tx) =>
        this.store.saveApiKey(key, tx),
      );
      this.directory.putApiKey(key);
      return { key, secret: secret.secret };
    });
  }

  revokeApiKey(id: string, actor: Actor, scope: Scope): Promise<ApiKey> {
    return this.serial.run(async () => {
      const before = this.directory.apiKey(id);
      if (!before || (scope.orgId !== null && before.orgId !== scope.orgId)) throw notFound("api_key", id);
      if (before.revokedAt) return before;
      const key = { ...before, revokedAt: new Date() };
      const org = key.orgId ? (this.directory.organization(key.orgId) ?? null) : null;
      await this.record([identityEvent("api_key.revoked", actor, { type: "api_key", id, name: key.name }, org, null, apiKeyState(before), apiKeyState(key))], (tx) =>
        this.store.saveApiKey(key, tx),
      );
      this.directory.putApiKey(key);
      return key;
    });
  }

  /** True while some administrator key is neither revoked nor expired. */
  hasUsableAdmin(now = Date.now()): boolean {
    return this.directory.listApiKeys(ALL_ORGANIZATIONS).some((k) => k.role === "admin" && !k.revokedAt && (!k.expiresAt || k.expiresAt.getTime() > now));
  }

  /**
   * On a database with no usable administrator key (none, or all revoked or expired), creates one
   * and writes it to a file readable only by this user. Returns the file's path, or null when a
   * usable administrator key exists.
   */
  async ensureBootstrapAdmin(dataDir: string): Promise<string | null> {
    if (this.hasUsableAdmin()) return null;
    const secret = newApiKeySecret();
    const file = path.join(dataDir, "bootstrap-admin.token");
    // The file first: a start that dies between the two steps must not leave a key nobody holds.
    fs.mkdirSync(dataDir, { recursive: true });
    fs.rmSync(`${file}.tmp`, { force: true });
    fs.writeFileSync(`${file}.tmp`, `${secret.secret}\n`, { mode: 0o600 });
    fs.renameSync(`${file}.tmp`, file);
    await this.createApiKey({ name: "bootstrap administrator", role: "admin", organization: null, expiresAt: null }, SYSTEM, ALL_ORGANIZATIONS, secret);
    return file;
  }
}
