import { InputError } from "../lib/errors";
import type { ChronFilter, ChronStore } from "./chron-store";
import { toRecord, type ChronRecord } from "./record";

export interface ListResult {
  records: ChronRecord[];
  next_cursor: string | null;
}

type Tally = { allow: number; deny: number; approval_required: number };

/** Approvals asked for, approved, rejected, expired unanswered or unused, and spent by an allow. */
export interface ApprovalTally {
  requested: number;
  approved: number;
  rejected: number;
  expired: number;
  used: number;
}

const APPROVAL_EVENTS = ["approval.requested", "approval.approved", "approval.rejected", "approval.expired", "approval.used"] as const;

export interface SummaryDay extends Tally {
  day: string;
  approvals: ApprovalTally;
  by_agent: (Tally & { agent_id: string | null; agent_name: string | null })[];
  by_accountable_human: (Tally & { human_id: string | null; email: string | null })[];
  by_action: (Tally & { action: string | null })[];
  by_policy_version: (Tally & { version: number | null })[];
}

export interface Summary {
  totals: Tally & { approvals: ApprovalTally };
  days: SummaryDay[];
}

/**
 * A page's cursor: the last seq it held, and which way the pages go. Cursors of the oldest-first
 * listing ({"after": seq}) are the ones issued before newest-first existed, and stay valid.
 */
export function encodeCursor(seq: number, order: "asc" | "desc" = "asc"): string {
  return Buffer.from(JSON.stringify(order === "asc" ? { after: seq } : { before: seq })).toString("base64url");
}

export function decodeCursor(cursor: string, order: "asc" | "desc" = "asc"): number {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as { after?: unknown; before?: unknown };
    const seq = order === "asc" ? parsed.after : parsed.before;
    if (typeof seq === "number" && Number.isSafeInteger(seq) && seq >= 0) return seq;
  } catch {
    // reported below
  }
  throw new InputError("invalid_cursor", "cursor is not one this server issued for this order", [{ path: "cursor", message: "invalid cursor" }]);
}

/** Reading Chron: pages of records, and the summary the dashboard charts. */
export class ChronService {
  constructor(private readonly store: ChronStore) {}

  /** A page of records, oldest first (`asc`, chain order) or newest first (`desc`). */
  async list(filter: ChronFilter, cursor: string | undefined, limit: number, order: "asc" | "desc" = "asc"): Promise<ListResult> {
    let rows;
    if (order === "asc") rows = await this.store.list(filter, cursor ? decodeCursor(cursor) : 0, limit + 1);
    else {
      const below = Math.min(filter.toSeq ?? Infinity, cursor ? decodeCursor(cursor, "desc") - 1 : Infinity);
      rows = await this.store.list(Number.isFinite(below) ? { ...filter, toSeq: below } : filter, 0, limit + 1, "desc");
    }
    const page = rows.slice(0, limit);
    return {
      records: page.map(toRecord),
      next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1].seq, order) : null,
    };
  }

  /**
   * Allows and denies per UTC day, by agent, accountable human (as recorded), action and policy
   * version. The counting is done by the database; names come from `names`.
   */
  async summary(filter: ChronFilter, names: { agent(id: string): string | null; human(id: string): string | null }): Promise<Summary> {
    const days = new Map<string, SummaryDay>();
    const noApprovals = (): ApprovalTally => ({ requested: 0, approved: 0, rejected: 0, expired: 0, used: 0 });
    const totals: Summary["totals"] = { allow: 0, deny: 0, approval_required: 0, approvals: noApprovals() };
    const dayOf = (d: string) => {
      let day = days.get(d);
      if (!day) {
        day = { day: d, allow: 0, deny: 0, approval_required: 0, approvals: noApprovals(), by_agent: [], by_accountable_human: [], by_action: [], by_policy_version: [] };
        days.set(d, day);
      }
      return day;
    };
    const bump = <T extends Tally>(list: T[], match: (t: T) => boolean, make: () => Omit<T, keyof Tally>, outcome: keyof Tally, n: number) => {
      let t = list.find(match);
      if (!t) list.push((t = { ...make(), allow: 0, deny: 0, approval_required: 0 } as T));
      t[outcome] += n;
    };
    for (const c of await this.store.decisionCounts(filter)) {
      const outcome = c.decision === "allow" || c.decision === "approval_required" ? c.decision : "deny";
      const day = dayOf(c.day);
      day[outcome] += c.count;
      totals[outcome] += c.count;
      bump(day.by_agent, (t) => t.agent_id === c.agentId, () => ({ agent_id: c.agentId, agent_name: c.agentId && names.agent(c.agentId) }), outcome, c.count);
      bump(day.by_accountable_human, (t) => t.human_id === c.ownerId, () => ({ human_id: c.ownerId, email: c.ownerId && names.human(c.ownerId) }), outcome, c.count);
      bump(day.by_action, (t) => t.action === c.action, () => ({ action: c.action }), outcome, c.count);
      bump(day.by_policy_version, (t) => t.version === c.policyVersion, () => ({ version: c.policyVersion }), outcome, c.count);
    }
    for (const e of await this.store.eventCounts(filter, APPROVAL_EVENTS)) {
      const step = e.type.slice("approval.".length) as keyof ApprovalTally;
      dayOf(e.day).approvals[step] += e.count;
      totals.approvals[step] += e.count;
    }
    const byCount = (a: Tally, b: Tally) => b.allow + b.deny + b.approval_required - (a.allow + a.deny + a.approval_required);
    const sorted = [...days.values()].sort((a, b) => a.day.localeCompare(b.day));
    for (const d of sorted) for (const list of [d.by_agent, d.by_accountable_human, d.by_action, d.by_policy_version]) list.sort(byCount);
    return { totals, days: sorted };
  }
}
