import { EffectRefused } from "../chron/chron-store";
import type { Tx } from "../db/database";
import type { Approval, ApprovalStatus, WebhookDelivery } from "./model";

/**
 * Thrown when a conditional transition finds the approval no longer in a status it expected (or,
 * for spending, expired): another process, or a hand edit of the database, got there first. The
 * transaction it runs in is then rolled back, Chron record included.
 */
export class ApprovalStateConflict extends EffectRefused {}

/**
 * Thrown by an approval's insert that finds, under the Chron writers' lock, an open approval of the
 * same agent for the same request: another process asked for it a moment ago. The transaction
 * rolls back, and the request is answered with that approval, as it is when this process holds it.
 */
export class ApprovalAlreadyOpen extends EffectRefused {
  constructor(readonly approval: Approval) {
    super(`approval ${approval.id} is open for this request already`);
  }
}

export interface Transition {
  status: ApprovalStatus;
  decidedAt?: Date;
  decidedBy?: Approval["decidedBy"];
  decisionReason?: string;
  usedAt?: Date;
  usedByDecisionId?: string;
}

/**
 * Persistence of approvals. Every write takes the transaction of the Chron commit that records it
 * (ChronWriter.commit): an approval's change and its record commit together or not at all.
 */
export interface ApprovalStore {
  /** Open approvals, and closed ones that expire (or expired) at or after `since`: what CLAIIM keeps in memory. */
  listRecent(since: Date): Promise<Approval[]>;
  find(id: string): Promise<Approval | null>;
  /**
   * Inserts a new approval, unless the database holds an open one (pending or approved, unexpired
   * at the new one's creation) of the same agent for the same request: then ApprovalAlreadyOpen.
   * WARNING: only a look inside the transaction that holds the Chron writers' lock (ChronStore.append
   * runs effects under it) keeps two processes from opening two approvals for one request.
   */
  insert(approval: Approval, tx: Tx): Promise<void>;
  /**
   * Moves the approval from one of `from` to `to.status`, only while it is in one of them (and,
   * when `unexpiredAt` is given, only if it expires after that instant); else ApprovalStateConflict.
   */
  transition(id: string, from: readonly ApprovalStatus[], to: Transition, tx: Tx, unexpiredAt?: Date): Promise<void>;
  saveWebhook(id: string, webhook: WebhookDelivery, tx: Tx): Promise<void>;
}
