import { ApprovalAlreadyOpen, ApprovalStateConflict, type ApprovalStore, type Transition } from "../../../src/approvals/approval-store";
import type { Approval, ApprovalStatus, WebhookDelivery } from "../../../src/approvals/model";

import { fieldsOf, type Transactional } from "./transactional";

const copy = <T>(v: T): T => structuredClone(v);

/** In-memory approvals for service tests; it checks transitions as the database does. */
export class FakeApprovalStore implements ApprovalStore, Transactional {
  rows = new Map<string, Approval>();
  private readonly saved = fieldsOf(this as FakeApprovalStore, ["rows"]);
  snapshot = () => this.saved.snapshot();
  restore = (s: unknown) => this.saved.restore(s);

  async listRecent(since: Date): Promise<Approval[]> {
    return [...this.rows.values()].filter((a) => a.status === "pending" || a.status === "approved" || a.expiresAt >= since).map(copy);
  }
  async find(id: string): Promise<Approval | null> {
    const a = this.rows.get(id);
    return a ? copy(a) : null;
  }
  async insert(a: Approval): Promise<void> {
    if (this.rows.has(a.id)) throw new Error("duplicate approval");
    const open = [...this.rows.values()].find(
      (o) => o.agentId === a.agentId && (o.status === "pending" || o.status === "approved") && o.expiresAt > a.createdAt && JSON.stringify(o.request) === JSON.stringify(a.request),
    );
    if (open) throw new ApprovalAlreadyOpen(copy(open));
    this.rows.set(a.id, copy(a));
  }
  async transition(id: string, from: readonly ApprovalStatus[], to: Transition, _tx: unknown, unexpiredAt?: Date): Promise<void> {
    const a = this.rows.get(id);
    if (!a || !from.includes(a.status) || (unexpiredAt && a.expiresAt <= unexpiredAt)) throw new ApprovalStateConflict(`approval ${id} moved`);
    this.rows.set(id, { ...a, ...copy(to) } as Approval);
  }
  async saveWebhook(id: string, webhook: WebhookDelivery): Promise<void> {
    const a = this.rows.get(id);
    if (a) a.webhook = copy(webhook);
  }
}
