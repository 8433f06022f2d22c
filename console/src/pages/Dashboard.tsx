import { useMemo, useState } from "react";
import { Link } from "wouter";
import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { query, type RecordPage, type Summary } from "../api";
import { useApi, useTitle } from "../components/hooks";
import { Loading, Problem, Section, Time } from "../components/ui";
import { DecisionTable } from "../components/records";
import { can, useSession } from "../session";
import { APPROVALS_ROLES } from "./Approvals";

const RANGES = [7, 30, 90] as const;
const ALLOW = "#1a7f37";
const DENY = "#b42318";
const WAIT = "#9a6700";

/** The three outcomes of a decision: allowed, denied, or waiting for a human's approval. */
type Tally = { allow: number; deny: number; approval_required: number };
type Row = Tally & { name: string };
const sum = (t: Tally) => t.allow + t.deny + t.approval_required;

/** The window of the last `days` UTC days, today included: [from, to). */
function window(days: number): { from: string; to: string } {
  const today = new Date();
  today.setUTCHours(0, 0, 0, 0);
  const to = new Date(today.getTime() + 86_400_000);
  const from = new Date(to.getTime() - days * 86_400_000);
  return { from: from.toISOString(), to: to.toISOString() };
}

/** Adds up a breakdown over the days, largest first, the rest summed as "others". */
function total<T extends Tally>(summary: Summary, pick: (d: Summary["days"][number]) => T[], name: (t: T) => string, top = 8): Row[] {
  const sums = new Map<string, Row>();
  for (const day of summary.days) {
    for (const t of pick(day)) {
      const key = name(t);
      const row = sums.get(key) ?? { name: key, allow: 0, deny: 0, approval_required: 0 };
      row.allow += t.allow;
      row.deny += t.deny;
      row.approval_required += t.approval_required;
      sums.set(key, row);
    }
  }
  const rows = [...sums.values()].sort((a, b) => sum(b) - sum(a));
  if (rows.length <= top) return rows;
  const rest = rows
    .slice(top)
    .reduce((o, r) => ({ name: o.name, allow: o.allow + r.allow, deny: o.deny + r.deny, approval_required: o.approval_required + r.approval_required }), {
      name: `${rows.length - top} others`,
      allow: 0,
      deny: 0,
      approval_required: 0,
    });
  return [...rows.slice(0, top), rest];
}

/** One row per UTC day of the window, days without decisions included, so that time reads evenly. */
function everyDay(span: { from: string; to: string }, summary: Summary): Row[] {
  const counted = new Map(summary.days.map((d) => [d.day, d]));
  const rows: Row[] = [];
  for (let t = Date.parse(span.from); t < Date.parse(span.to); t += 86_400_000) {
    const day = new Date(t).toISOString().slice(0, 10);
    const d = counted.get(day);
    rows.push({ name: day, allow: d?.allow ?? 0, deny: d?.deny ?? 0, approval_required: d?.approval_required ?? 0 });
  }
  return rows;
}

/** A chart and, for screen readers and anyone who wants the numbers, the same data as a table. */
function Chart({ title, rows, horizontal, what }: { title: string; rows: Row[]; horizontal?: boolean; what: string }) {
  const id = `chart-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  const height = horizontal ? Math.max(120, rows.length * 30 + 60) : 260;
  return (
    <figure className="chart" aria-labelledby={`${id}-caption`}>
      <figcaption id={`${id}-caption`}>{title}</figcaption>
      {rows.length === 0 ? (
        <p className="muted">No decisions in this window.</p>
      ) : (
        <div role="img" aria-label={`${title}: bar chart of allows, denies and approvals required by ${what}; the table below has the numbers`}>
          <ResponsiveContainer width="100%" height={height}>
            <BarChart data={rows} layout={horizontal ? "vertical" : "horizontal"} margin={{ left: 8, right: 16, top: 8, bottom: 8 }} accessibilityLayer={false}>
              <CartesianGrid strokeDasharray="3 3" />
              {horizontal ? (
                <>
                  <XAxis type="number" allowDecimals={false} />
                  <YAxis type="category" dataKey="name" width={170} tick={{ fontSize: 12 }} />
                </>
              ) : (
                <>
                  <XAxis dataKey="name" tick={{ fontSize: 12 }} />
                  <YAxis allowDecimals={false} />
                </>
              )}
              <Tooltip />
              <Legend />
              <Bar dataKey="allow" name="Allows" stackId="d" fill={ALLOW} isAnimationActive={false} />
              <Bar dataKey="approval_required" name="Approval required" stackId="d" fill={WAIT} isAnimationActive={false} />
              <Bar dataKey="deny" name="Denies" stackId="d" fill={DENY} isAnimationActive={false} />
            </BarChart>
          </ResponsiveContainer>
        </div>
      )}
      <details>
        <summary>Table</summary>
        <table>
          <caption className="visually-hidden">{title}</caption>
          <thead>
            <tr>
              <th scope="col">{what}</th>
              <th scope="col">Allows</th>
              <th scope="col">Approval required</th>
              <th scope="col">Denies</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.name}>
                <th scope="row">{r.name}</th>
                <td>{r.allow}</td>
                <td>{r.approval_required}</td>
                <td>{r.deny}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}

function Tile({ label, value, testId, tone }: { label: string; value: string | number; testId?: string; tone?: "ok" | "bad" | "wait" }) {
  return (
    <div className={`tile${tone ? ` ${tone}` : ""}`}>
      <span className="tile-label">{label}</span>
      <span className="tile-value" data-testid={testId}>
        {value}
      </span>
    </div>
  );
}

export function Dashboard() {
  useTitle("Dashboard");
  const { me } = useSession();
  const [days, setDays] = useState<number>(30);
  const span = useMemo(() => window(days), [days]);
  const summary = useApi<Summary>(`/v1/chron/summary${query(span)}`);
  const denials = useApi<RecordPage>(`/v1/chron/records${query({ kind: "decision", decision: "deny", order: "desc", limit: 10 })}`);
  const s = summary.data;
  const charts = useMemo(
    () =>
      s && {
        days: everyDay(span, s),
        agents: total(s, (d) => d.by_agent, (t) => t.agent_name ?? t.agent_id ?? "no agent"),
        humans: total(s, (d) => d.by_accountable_human, (t) => t.email ?? t.human_id ?? "none recorded"),
        actions: total(s, (d) => d.by_action, (t) => t.action ?? "none"),
        versions: total(s, (d) => d.by_policy_version, (t) => (t.version === null ? "no policy" : `version ${t.version}`)),
      },
    [s, span],
  );
  const decided = s ? sum(s.totals) : 0;
  const approvals = s?.totals.approvals;

  return (
    <>
      <div className="page-head">
        <h1>Dashboard</h1>
        <div className="field inline">
          <label htmlFor="dashboard-window">Window</label>
          <select id="dashboard-window" value={days} onChange={(e) => setDays(Number(e.target.value))}>
            {RANGES.map((r) => (
              <option key={r} value={r}>
                last {r} days
              </option>
            ))}
          </select>
        </div>
      </div>
      <p className="muted">
        Decisions recorded in Chron from <Time at={span.from} /> to <Time at={span.to} />
        {me?.organization ? <> for organisation {me.organization}</> : " across every organisation you may see"}.
      </p>
      <Problem error={summary.error} what="The summary could not be read" />
      {summary.loading && !s ? <Loading what="Counting decisions" /> : null}
      {s && charts ? (
        <>
          <div className="tiles" aria-label="Totals">
            <Tile label="Decisions" value={decided} testId="total-decisions" />
            <Tile label="Allows" value={s.totals.allow} testId="total-allows" tone="ok" />
            <Tile label="Approval required" value={s.totals.approval_required} testId="total-approval-required" tone="wait" />
            <Tile label="Denies" value={s.totals.deny} testId="total-denies" tone="bad" />
            <Tile label="Deny rate" value={decided ? `${((100 * s.totals.deny) / decided).toFixed(1)} %` : "—"} />
          </div>
          {approvals ? (
            <Section
              title="Human approvals"
              actions={
                can(me, APPROVALS_ROLES) ? (
                  <Link href="/approvals" className="button secondary">
                    Pending approvals
                  </Link>
                ) : undefined
              }
            >
              <p className="muted">What humans were asked to approve in this window, and what became of it (approval events in Chron).</p>
              <div className="tiles" aria-label="Approvals">
                <Tile label="Requested" value={approvals.requested} testId="approvals-requested" tone="wait" />
                <Tile label="Approved" value={approvals.approved} testId="approvals-approved" tone="ok" />
                <Tile label="Rejected" value={approvals.rejected} testId="approvals-rejected" tone="bad" />
                <Tile label="Expired" value={approvals.expired} testId="approvals-expired" />
                <Tile label="Used" value={approvals.used} testId="approvals-used" tone="ok" />
              </div>
            </Section>
          ) : null}
          <Section title="Decisions over time">
            <Chart title="Per day (UTC)" rows={charts.days} what="Day" />
          </Section>
          <div className="grid2">
            <Section title="By agent">
              <Chart title="Decisions by agent" rows={charts.agents} horizontal what="Agent" />
            </Section>
            <Section title="By accountable human">
              <Chart title="Decisions by accountable human" rows={charts.humans} horizontal what="Accountable human" />
            </Section>
            <Section title="By action">
              <Chart title="Decisions by action" rows={charts.actions} horizontal what="Action" />
            </Section>
            <Section title="By policy version">
              <Chart title="Decisions by policy version" rows={charts.versions} horizontal what="Policy version" />
            </Section>
          </div>
        </>
      ) : null}
      <Section
        title="Latest denials"
        busy={denials.loading}
        actions={
          <Link href={`/chron${query({ kind: "decision", decision: "deny" })}`} className="button secondary">
            All denials
          </Link>
        }
      >
        <Problem error={denials.error} what="The latest denials could not be read" />
        {denials.data ? (
          denials.data.records.length === 0 ? (
            <p className="muted">No denial recorded.</p>
          ) : (
            <DecisionTable records={denials.data.records} agentColumn />
          )
        ) : null}
      </Section>
    </>
  );
}
