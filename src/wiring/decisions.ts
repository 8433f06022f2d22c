// Approvals and decisions in the object graph: what approvals read of identities (the in-memory
// directory), the approval service, the idempotency index and the decision service.
import type { Config } from "../config";
import type { Logger } from "../lib/logger";
import type { LiveWork } from "../lib/pacer";
import type { ChronWriter } from "../chron/chron-writer";
import type { Recorder } from "../chron/chron-store";
import { redact } from "../chron/redaction";
import type { IdentityDirectory } from "../identity/directory";
import type { PolicyEngine } from "../policy/policy-engine";
import { ApprovalService } from "../approvals/approval-service";
import type { Directory } from "../approvals/views";
import { DecisionService } from "../decisions/decision-service";
import { IdempotencyIndex } from "../decisions/idempotency";
import { ALL_ORGANIZATIONS } from "../shared/principal";
import type { ApprovalStore } from "../approvals/approval-store";

export function approvalPart(config: Config, stores: { approval: ApprovalStore }, directory: IdentityDirectory, record: Recorder, logger: Logger, userAgent: string) {
  // What approvals read of identities, from the in-memory directory.
  const approvalDirectory: Directory = {
    agentContext: (id) => directory.agentContext(id),
    human: (id) => {
      try {
        return directory.human(id, ALL_ORGANIZATIONS);
      } catch {
        return undefined;
      }
    },
    humanByEmail: (orgId, email) => directory.humanInOrganization(orgId, email),
    organization: (id) => directory.organization(id),
  };
  const approvalSettings = { ...config.approvals, keepClosedSeconds: 24 * 3600, maxOpenPerAgent: 100, maxWaiters: 1000, publicUrl: config.publicUrl, userAgent };
  const approvals = new ApprovalService({ store: stores.approval, record, redact: (content) => redact(content, config.redaction), directory: approvalDirectory, logger }, approvalSettings);
  return { approvals, approvalDirectory };
}

export function decisionPart(
  config: Config,
  deps: { directory: IdentityDirectory; engine: PolicyEngine; writer: ChronWriter; approvals: ApprovalService; live: LiveWork },
  logger: Logger,
) {
  const { directory, engine, writer, approvals, live } = deps;
  const idempotency = new IdempotencyIndex({ ttlMs: config.idempotency.ttlSeconds * 1000, maxKeys: config.idempotency.maxKeys, publicUrl: config.publicUrl });
  const decisions = new DecisionService(
    {
      agentContext: (id) => directory.agentContext(id),
      activePolicy: () => engine.active(),
      shadowPolicy: () => engine.shadow(),
      record: (content) => writer.append(content),
      claimOf: (agentId, key) => writer.claimOf(agentId, key),
      redact: (content) => redact(content, config.redaction),
      approvals,
    },
    logger,
    live,
    idempotency,
  );
  return { idempotency, decisions };
}
