import { scanRecords, type ChronFilter, type ChronStore } from "../chron/chron-store";
import { decisionRef, policyOutcome, type DecisionContent, type DecisionRef } from "../chron/record";
import { INTERACTIVE, Pacer, type LiveWork } from "../lib/pacer";

export interface ShadowSample extends DecisionRef {
  decision: string;
  reasons: string[];
  shadow_decision: string;
  shadow_reasons: string[];
}

interface Tally {
  evaluated: number;
  disagreements: number;
  /** The shadow would not have allowed what the active version allowed (it denies, or asks for an approval). */
  allow_to_deny: number;
  /** The shadow would have allowed what the active version did not. */
  deny_to_allow: number;
  /** Neither allows, but one denies where the other asks for a human's approval. */
  approval_changes: number;
}

export type ShadowGroup = Tally & { samples: ShadowSample[] };

export interface ShadowReport extends Tally {
  shadow_version: number;
  from: string;
  to: string | null;
  by_action: (ShadowGroup & { action: string })[];
  by_agent: (ShadowGroup & { agent: { id: string; name: string } })[];
}

export interface ShadowReportQuery {
  version: number;
  fromMs: number;
  toMs?: number;
  orgId?: string;
  samplesPerGroup: number;
}

const PAGE = 1000;

function tally(t: Tally, d: DecisionContent): void {
  t.evaluated += 1;
  if (d.shadow!.agrees) return;
  t.disagreements += 1;
  // The shadow was compared with what the active version answered, before any approval was looked at.
  if (policyOutcome(d) === "allow") t.allow_to_deny += 1;
  else if (d.shadow!.decision === "allow") t.deny_to_allow += 1;
  else t.approval_changes += 1;
}

/**
 * Where the shadow version disagreed with the decisions made, from the shadow results Chron
 * recorded beside them: counts overall, and per action and per agent with sample records. It
 * reads Chron page by page, so memory holds the groups, not the records, and gives way to live
 * decisions as it goes.
 */
export async function shadowReport(chron: Pick<ChronStore, "list" | "bounds">, q: ShadowReportQuery, live: LiveWork): Promise<ShadowReport> {
  const pacer = new Pacer(live, INTERACTIVE);
  const filter: ChronFilter = { kind: "decision", fromMs: q.fromMs, toMs: q.toMs, orgId: q.orgId };
  const total: Tally = { evaluated: 0, disagreements: 0, allow_to_deny: 0, deny_to_allow: 0, approval_changes: 0 };
  const byAction = new Map<string, ShadowGroup & { action: string }>();
  const byAgent = new Map<string, ShadowGroup & { agent: { id: string; name: string } }>();
  const group = <G extends ShadowGroup>(map: Map<string, G>, key: string, make: () => Omit<G, keyof ShadowGroup>): G => {
    let g = map.get(key);
    if (!g) map.set(key, (g = { ...make(), evaluated: 0, disagreements: 0, allow_to_deny: 0, deny_to_allow: 0, approval_changes: 0, samples: [] } as unknown as G));
    return g;
  };
  for await (const rows of scanRecords(chron, filter, PAGE)) {
    for (const row of rows) {
      await pacer.tick();
      const d = JSON.parse(row.content) as DecisionContent;
      if (d.shadow?.version !== q.version) continue;
      const groups = [group(byAction, d.action, () => ({ action: d.action })), group(byAgent, d.agent.id, () => ({ agent: { id: d.agent.id, name: d.agent.name } }))];
      tally(total, d);
      for (const g of groups) {
        tally(g, d);
        if (!d.shadow.agrees && g.samples.length < q.samplesPerGroup) {
          g.samples.push({
            ...decisionRef(row.seq, d),
            decision: policyOutcome(d),
            reasons: d.reasons,
            shadow_decision: d.shadow.decision,
            shadow_reasons: d.shadow.reasons ?? [],
          });
        }
      }
    }
  }
  const ranked = <G extends Tally>(groups: Iterable<G>): G[] => [...groups].sort((a, b) => b.disagreements - a.disagreements || b.evaluated - a.evaluated);
  return {
    shadow_version: q.version,
    from: new Date(q.fromMs).toISOString(),
    to: q.toMs === undefined ? null : new Date(q.toMs).toISOString(),
    ...total,
    by_action: ranked(byAction.values()),
    by_agent: ranked(byAgent.values()),
  };
}
