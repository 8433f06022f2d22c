import type { Prisma, Tx } from "../db/database";
import { canonicalize } from "../lib/canonical";
import { ApprovalAlreadyOpen, ApprovalStateConflict, type ApprovalStore, type Transition } from "./approval-store";
import type { Approval, ApprovalStatus, BoundRequest, WebhookDelivery, WebhookState } from "./model";
import type { Approvers } from "../policy/approval-spec";

type Row = Awaited<ReturnType<Prisma["approval"]["findUnique"]>> & object;

function fromRow(r: Row): Approval {
  return {
    id: r.id,
    orgId: r.orgId,
    agentId: r.agentId,
    ownerId: r.ownerId,
    credentialId: r.credentialId,
    decisionId: r.decisionId,
    request: JSON.parse(r.request) as BoundRequest,
    reasons: JSON.parse(r.reasons) as string[],
    approvers: JSON.parse(r.approvers) as Approvers,
    status: r.status as ApprovalStatus,
    policyVersion: r.policyVersion,
    createdAt: r.createdAt,
    expiresAt: r.expiresAt,
    decidedAt: r.decidedAt,
    decidedBy: r.decidedBy ? (JSON.parse(r.decidedBy) as Approval["decidedBy"]) : null,
    decisionReason: r.decisionReason,
    usedAt: r.usedAt,
    usedByDecisionId: r.usedByDecisionId,
    webhook: {
      state: r.webhookState as WebhookState,
      attempts: r.webhookAttempts,
      lastAttemptAt: r.webhookLastAttemptAt,
      nextAttemptAt: r.webhookNextAttemptAt,
      lastError: r.webhookLastError,
      deliveredAt: r.webhookDeliveredAt,
    },
  };
}

function webhookColumns(w: WebhookDelivery) {
  return {
    webhookState: w.state,
    webhookAttempts: w.attempts,
    webhookLastAttemptAt: w.lastAttemptAt,
    webhookNextAttemptAt: w.nextAttemptAt,
    webhookLastError: w.lastError,
    webhookDeliveredAt: w.deliveredAt,
  };
}

export class PrismaApprovalStore implements ApprovalStore {
  constructor(private readonly prisma: Prisma) {}

  async listRecent(since: Date): Promise<Approval[]> {
    const rows = await this.prisma.approval.findMany({
      where: { OR: [{ status: { in: ["pending", "approved"] } }, { expiresAt: { gte: since } }] },
      orderBy: { createdAt: "asc" },
    });
    return rows.map(fromRow);
  }

  async find(id: string): Promise<Approval | null> {
    const row = await this.prisma.approval.findUnique({ where: { id } });
    return row ? fromRow(row) : null;
  }

  async insert(a: Approval, tx: Tx): Promise<void> {
    const request = canonicalize(a.request);
    // Indexed by agent: an agent has few open approvals (maxOpenPerAgent).
    const open = await tx.approval.findFirst({ where: { agentId: a.agentId, request, status: { in: ["pending", "approved"] }, expiresAt: { gt: a.createdAt } } });
    if (open) throw new ApprovalAlreadyOpen(fromRow(open));
    await tx.approval.create({
      data: {
        id: a.id,
        orgId: a.orgId,
        agentId: a.agentId,
        ownerId: a.ownerId,
        credentialId: a.credentialId,
        decisionId: a.decisionId,
        request,
        reasons: canonicalize(a.reasons),
        approvers: canonicalize(a.approvers),
        status: a.status,
        policyVersion: a.policyVersion,
        createdAt: a.createdAt,
        expiresAt: a.expiresAt,
        decidedAt: a.decidedAt,
        decidedBy: a.decidedBy ? canonicalize(a.decidedBy) : null,
        decisionReason: a.decisionReason,
        usedAt: a.usedAt,
        usedByDecisionId: a.usedByDecisionId,
        ...webhookColumns(a.webhook),
      },
    });
  }

  async transition(id: string, from: readonly ApprovalStatus[], to: Transition, tx: Tx, unexpiredAt?: Date): Promise<void> {
    const { count } = await tx.approval.updateMany({
      where: { id, status: { in: [...from] }, ...(unexpiredAt ? { expiresAt: { gt: unexpiredAt } } : {}) },
      data: {
        status: to.status,
        ...(to.decidedAt ? { decidedAt: to.decidedAt } : {}),
        ...(to.decidedBy ? { decidedBy: canonicalize(to.decidedBy) } : {}),
        ...(to.decisionReason !== undefined ? { decisionReason: to.decisionReason } : {}),
        ...(to.usedAt ? { usedAt: to.usedAt } : {}),
        ...(to.usedByDecisionId ? { usedByDecisionId: to.usedByDecisionId } : {}),
      },
    });
    if (count !== 1) throw new ApprovalStateConflict(`approval ${id} is no longer ${from.join(" or ")}${unexpiredAt ? " and unexpired" : ""}`);
  }

  async saveWebhook(id: string, webhook: WebhookDelivery, tx: Tx): Promise<void> {
    await tx.approval.update({ where: { id }, data: webhookColumns(webhook) });
  }
}
