import { useEffect, useState } from "react";
import { Link, useParams } from "wouter";
import canonicalize from "canonicalize";
import { query, type ChronRecord, type RecordPage } from "../api";
import { approverName, ApprovalStatusBadge } from "../components/approvals";
import { useApi, useTitle } from "../components/hooks";
import { DecisionBadge, Hash, Loading, Problem, Reasons, Section, Time } from "../components/ui";
import { useFirstBad, VerifyBanner } from "../components/verify";

const one = (seq: number) => `/v1/chron/records${query({ from_seq: seq, to_seq: seq, limit: 1 })}`;

/**
 * The record's hash, computed again in this browser from what the API returned: SHA-256 of the
 * RFC 8785 canonical JSON of the record without its `hash` (its content, seq and prev_hash),
 * which is how Chron defines it. null where the browser has no Web Crypto (not a secure context).
 */
async function recompute(record: ChronRecord): Promise<string | null> {
  if (!globalThis.crypto?.subtle) return null;
  const { hash: _hash, ...hashed } = record;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(canonicalize(hashed)));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function Field({ name, children }: { name: string; children: React.ReactNode }) {
  return (
    <>
      <dt>{name}</dt>
      <dd>{children}</dd>
    </>
  );
}

export function RecordDetail() {
  const { seq: raw } = useParams<{ seq: string }>();
  const seq = Number(raw);
  useTitle(`Record #${raw}`);
  const valid = Number.isSafeInteger(seq) && seq >= 1;
  const page = useApi<RecordPage>(valid ? one(seq) : null);
  const before = useApi<RecordPage>(valid && seq > 1 ? one(seq - 1) : null);
  const after = useApi<RecordPage>(valid ? `/v1/chron/records${query({ from_seq: seq + 1, limit: 1 })}` : null);
  const firstBad = useFirstBad();
  const record = page.data?.records[0];
  const predecessor = before.data?.records[0];
  const next = after.data?.records[0];
  const [recomputed, setRecomputed] = useState<string | null | undefined>(undefined);
  useEffect(() => {
    setRecomputed(undefined);
    if (record) recompute(record).then(setRecomputed, () => setRecomputed(null));
  }, [record]);

  if (!valid) return <Problem error={new Error(`${raw} is not a record number`)} />;
  return (
    <>
      <p>
        <Link href="/chron">← Chron explorer</Link>
      </p>
      <h1>Record #{seq}</h1>
      <VerifyBanner />
      <Problem error={page.error} what="The record could not be read" />
      {page.loading ? <Loading what="Reading the record" /> : null}
      {page.data && !record ? (
        <div className="notice" role="status">
          No record #{seq} that you may see: it does not exist, was archived by retention, or belongs to another organisation.
        </div>
      ) : null}
      {record ? (
        <>
          {firstBad === seq ? (
            <div className="banner bad" role="alert">
              <strong>This is the first bad record</strong> the last verification found.
            </div>
          ) : null}
          <Section title={record.kind === "decision" ? "Decision" : `Event: ${record.type}`}>
            <dl className="fields">
              <Field name="Kind">{record.kind}</Field>
              <Field name="Time">
                <Time at={record.timestamp} />
              </Field>
              <Field name={record.kind === "decision" ? "Decision id" : "Event id"}>
                <code>{record.decision_id ?? record.event_id}</code>
              </Field>
              <Field name="Organisation">{record.organization?.slug ?? "—"}</Field>
              <Field name="Agent">
                {record.agent ? (
                  <Link href={`/agents/${record.agent.id}`}>
                    {record.agent.name}
                    {record.agent.status ? ` (${record.agent.status} then)` : ""}
                  </Link>
                ) : (
                  "—"
                )}
              </Field>
              <Field name="Accountable human">{record.accountable_human ? `${record.accountable_human.name} <${record.accountable_human.email}>` : "—"}</Field>
              {record.kind === "decision" ? (
                <>
                  <Field name="Action">{record.action}</Field>
                  <Field name="Resource">{record.resource}</Field>
                  <Field name="Purpose">{record.purpose}</Field>
                  <Field name="Decision">
                    <DecisionBadge decision={record.decision} />
                  </Field>
                  {record.policy_decision && record.policy_decision !== record.decision ? (
                    <Field name="The policy answered">
                      <DecisionBadge decision={record.policy_decision} /> <span className="muted">before the approval was looked at</span>
                    </Field>
                  ) : null}
                  <Field name="Reasons">
                    <Reasons reasons={record.reasons} codes={record.reason_codes} list />
                  </Field>
                  {record.approval ? (
                    <Field name="Approval">
                      <Link href={`/approvals/${record.approval.id}`}>{record.approval.id}</Link> <ApprovalStatusBadge status={record.approval.status} />
                      <span className="muted">when recorded</span>
                      {record.approval.approved_by ? <>; approved by {approverName(record.approval.approved_by)}</> : null}; expires <Time at={record.approval.expires_at} />
                    </Field>
                  ) : null}
                  <Field name="Policy">{record.policy ? `version ${record.policy.version} (${record.policy.revision})` : "none active"}</Field>
                </>
              ) : (
                <>
                  <Field name="Type">{record.type}</Field>
                  <Field name="Actor">{record.actor ? `${record.actor.name} (${record.actor.type})` : "—"}</Field>
                  <Field name="Subject">
                    {record.subject?.type === "approval" ? (
                      <>
                        approval <Link href={`/approvals/${record.subject.id}`}>{record.subject.id}</Link> ({record.subject.name})
                      </>
                    ) : record.subject ? (
                      `${record.subject.type} ${record.subject.name}`
                    ) : (
                      "—"
                    )}
                  </Field>
                  <Field name="Reason">{record.reason ?? "—"}</Field>
                </>
              )}
            </dl>
          </Section>
          <Section title="Proof">
            <dl className="fields">
              <Field name="Hash">
                <Hash value={record.hash} />
              </Field>
              <Field name="Recomputed in this browser">
                {recomputed === undefined ? (
                  "…"
                ) : recomputed === null ? (
                  <span className="muted">not available here (Web Crypto needs a secure context)</span>
                ) : recomputed === record.hash ? (
                  <span className="badge ok" data-testid="hash-check">
                    matches
                  </span>
                ) : (
                  <span data-testid="hash-check">
                    <span className="badge bad">does not match</span> <Hash value={recomputed} />
                  </span>
                )}
              </Field>
              <Field name="Previous hash">
                <Hash value={record.prev_hash} />
              </Field>
              <Field name="Predecessor">
                {seq === 1 ? (
                  "none: the first record chains from 64 zeros"
                ) : predecessor ? (
                  <>
                    <Link href={`/chron/records/${seq - 1}`}>Record #{seq - 1}</Link>{" "}
                    {predecessor.hash === record.prev_hash ? <span className="badge ok">link intact</span> : <span className="badge bad">its hash differs from this previous hash</span>}
                  </>
                ) : before.data ? (
                  <span className="muted">record #{seq - 1} is not one you may see (another organisation&apos;s, or archived)</span>
                ) : (
                  "…"
                )}
              </Field>
              <Field name="Next visible record">{next ? <Link href={`/chron/records/${next.seq}`}>Record #{next.seq}</Link> : after.data ? "none" : "…"}</Field>
            </dl>
          </Section>
          <Section title="Full record (JSON)">
            <pre className="json" tabIndex={0} aria-label="The record as the API returned it">
              {JSON.stringify(record, null, 2)}
            </pre>
          </Section>
        </>
      ) : null}
    </>
  );
}
