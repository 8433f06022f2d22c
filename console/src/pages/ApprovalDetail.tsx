import { useState, type FormEvent } from "react";
import { Link, useParams } from "wouter";
import { ApiError, postJson, query, type Approval, type ChronRecord, type RecordPage } from "../api";
import { answerAs, approverName, ApprovalStatusBadge, Expiry, WhoMayAnswer, type AnswerAs } from "../components/approvals";
import { useApi, useTitle } from "../components/hooks";
import { Loading, Problem, Reasons, Section, Time } from "../components/ui";
import { DecisionTable } from "../components/records";
import { can, useSession } from "../session";

/** How long after its expiry the page looks in Chron for what became of an approval (its expiry is recorded then, or at the next start). */
const AFTER_EXPIRY_MS = 5 * 60_000;

export function ApprovalDetail() {
  const { id } = useParams<{ id: string }>();
  const { me } = useSession();
  const approval = useApi<Approval>(`/v1/approvals/${encodeURIComponent(id)}`);
  const a = approval.data;
  useTitle(a ? `Approval of ${a.request.action} ${a.request.resource}` : "Approval");
  // A signed-in human answers what the API lists as theirs to answer.
  const mine = useApi<{ approvals: Approval[] }>(me?.kind === "human" && a?.status === "pending" ? `/v1/approvals${query({ approver: "me", agent: a.agent.id, status: "pending", limit: 1000 })}` : null);
  const as = a ? answerAs(me, a, !!mine.data?.approvals.some((m) => m.id === a.id)) : null;
  const readsAgents = can(me, ["agent_manager", "auditor"]);
  // What the last answer did, kept here: once answered, the form goes.
  const [answered, setAnswered] = useState<string | null>(null);

  return (
    <>
      <p>
        <Link href="/approvals">← Approvals</Link>
      </p>
      <Problem error={approval.error} what="The approval could not be read" />
      {approval.loading && !a ? <Loading what="Reading the approval" /> : null}
      {a ? (
        <>
          <div className="page-head">
            <h1>
              {a.request.action} {a.request.resource} <ApprovalStatusBadge status={a.status} />
            </h1>
            <button type="button" className="secondary" onClick={approval.reload} disabled={approval.loading}>
              Refresh
            </button>
          </div>
          <Section title="The request">
            <p className="muted">Approving lets the agent make exactly this request once, before the approval expires; any other request is denied.</p>
            <dl className="fields">
              <dt>Agent</dt>
              <dd>{readsAgents ? <Link href={`/agents/${a.agent.id}`}>{a.agent.name}</Link> : a.agent.name}</dd>
              <dt>Organisation</dt>
              <dd>{a.organization}</dd>
              <dt>Accountable human</dt>
              <dd>{a.accountable_human ? `${a.accountable_human.name} <${a.accountable_human.email}>` : "—"}</dd>
              <dt>Action</dt>
              <dd>
                <code>{a.request.action}</code>
              </dd>
              <dt>Resource</dt>
              <dd>
                <code>{a.request.resource}</code>
              </dd>
              <dt>Purpose</dt>
              <dd>{a.request.purpose}</dd>
              <dt>Skill</dt>
              <dd>
                {a.request.skill.name} <code>{a.request.skill.version}</code>
              </dd>
              <dt>For the user</dt>
              <dd>{a.request.on_behalf_of ? a.request.on_behalf_of.subject : <span className="muted">none (the agent acts for itself)</span>}</dd>
              <dt>Why the policy asks</dt>
              <dd>
                <Reasons reasons={a.reasons} list />
              </dd>
              <dt>Policy version</dt>
              <dd>{a.policy_version ?? "—"}</dd>
            </dl>
          </Section>
          <Section title="Who may answer">
            <WhoMayAnswer approvers={a.approvers} />
            {a.request.on_behalf_of ? <p className="muted">Never {a.request.on_behalf_of.subject}, for whom the request was made.</p> : null}
          </Section>
          {as ? (
            <Answer
              approval={a}
              as={as}
              onAnswered={(what) => {
                setAnswered(what);
                approval.reload();
              }}
            />
          ) : null}
          {answered ? (
            <p role="status" className="notice" data-testid="answered">
              {answered}
            </p>
          ) : null}
          <Section title="Status">
            <dl className="fields">
              <dt>Status</dt>
              <dd data-testid="approval-status">
                <ApprovalStatusBadge status={a.status} />
              </dd>
              <dt>Asked for</dt>
              <dd>
                <Time at={a.created_at} />
              </dd>
              <dt>Expires</dt>
              <dd>
                <Expiry approval={a} />
              </dd>
              <dt>Answered</dt>
              <dd>
                {a.decided_at ? (
                  <>
                    <Time at={a.decided_at} /> by {a.decided_by ? approverName(a.decided_by) : "—"}: “{a.decision_reason}”
                  </>
                ) : (
                  <span className="muted">not yet</span>
                )}
              </dd>
              <dt>Used</dt>
              <dd>{a.used_at ? <Time at={a.used_at} /> : <span className="muted">not yet</span>}</dd>
            </dl>
          </Section>
          <Section title="Notification">
            <Webhook approval={a} />
          </Section>
          <Trail approval={a} />
        </>
      ) : null}
    </>
  );
}

function Webhook({ approval: { webhook: w } }: { approval: Approval }) {
  if (w.state === "none") return <p className="muted">No webhook is configured (CLAIIM_APPROVAL_WEBHOOK_URL): nobody was notified but through this page and the API.</p>;
  const tone = w.state === "delivered" ? "ok" : w.state === "failed" ? "bad" : "wait";
  return (
    <dl className="fields">
      <dt>Webhook</dt>
      <dd data-testid="webhook-state">
        <span className={`badge ${tone}`}>{w.state}</span> after {w.attempts} attempt{w.attempts === 1 ? "" : "s"}
      </dd>
      <dt>Last attempt</dt>
      <dd>
        <Time at={w.last_attempt_at} />
      </dd>
      {w.delivered_at ? (
        <>
          <dt>Delivered</dt>
          <dd>
            <Time at={w.delivered_at} />
          </dd>
        </>
      ) : null}
      {w.next_attempt_at ? (
        <>
          <dt>Next attempt</dt>
          <dd>
            <Time at={w.next_attempt_at} />
          </dd>
        </>
      ) : null}
      {w.last_error ? (
        <>
          <dt>Last error</dt>
          <dd>{w.last_error}</dd>
        </>
      ) : null}
    </dl>
  );
}

/** Approve or reject, with a reason that Chron records; a relaying key names the human whose answer it carries. */
function Answer({ approval: a, as, onAnswered }: { approval: Approval; as: AnswerAs; onAnswered(what: string): void }) {
  const [reason, setReason] = useState("");
  const [relay, setRelay] = useState(as.self ? "" : (as.relayFor[0] ?? ""));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const send = async (verdict: "approve" | "reject") => {
    setBusy(true);
    setError(null);
    try {
      const answered = await postJson<Approval>(`/v1/approvals/${a.id}/${verdict}`, { reason: reason.trim(), ...(relay ? { on_behalf_of: relay } : {}) });
      onAnswered(
        answered.status === "approved"
          ? `Approved: ${a.agent.name} may now ${a.request.action} ${a.request.resource} once, before the approval expires.`
          : `Rejected: ${a.agent.name} is denied if it asks with this approval.`,
      );
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };
  const choices = [...(as.self ? [""] : []), ...as.relayFor];
  return (
    <Section title="Your answer">
      {/* No implicit submission: Enter in the reason field neither approves nor rejects; the buttons do. */}
      <form className="lifecycle" onSubmit={(e: FormEvent) => e.preventDefault()}>
        <p>Your answer and its reason are recorded in Chron with your name. An agent waiting on the approval (GET …?wait=) learns it at once; otherwise when it next asks.</p>
        {choices.length > 1 || relay ? (
          <>
            <label htmlFor="answer-for">On behalf of</label>
            <select id="answer-for" value={relay} onChange={(e) => setRelay(e.target.value)}>
              {choices.map((c) => (
                <option key={c} value={c}>
                  {c || "nobody: this key answers in its own right"}
                </option>
              ))}
            </select>
            <p className="hint">This key relays the answer of a human the approval names, as a chat bridge does: Chron records them as the approver and this key as the one that told CLAIIM.</p>
          </>
        ) : null}
        <label htmlFor="answer-reason">Reason</label>
        <input id="answer-reason" type="text" required maxLength={1000} value={reason} onChange={(e) => setReason(e.target.value)} />
        <div className="row">
          <button type="button" disabled={busy || !reason.trim()} onClick={() => void send("approve")}>
            Approve
          </button>
          <button type="button" className="danger" disabled={busy || !reason.trim()} onClick={() => void send("reject")}>
            Reject
          </button>
        </div>
      </form>
      <Problem error={error} what="The answer was not taken" />
    </Section>
  );
}

/**
 * The approval's steps in Chron: the decisions that asked for it, named it, used it or were
 * refused it, and its approval.* events. Chron has no index by approval, so the page reads the
 * agent's records over the approval's life (from its request to a little after its expiry, or
 * now), at most 1000, and keeps those that name it.
 */
function Trail({ approval: a }: { approval: Approval }) {
  const { me } = useSession();
  const auditor = can(me, ["auditor"]);
  const ends = Date.parse(a.expires_at) + AFTER_EXPIRY_MS;
  const span = { agent: a.agent.id, from: a.created_at, to: ends < Date.now() ? new Date(ends).toISOString() : undefined };
  const page = useApi<RecordPage>(auditor ? `/v1/chron/records${query({ ...span, order: "asc", limit: 1000 })}` : null);
  const about = (r: ChronRecord) => r.approval?.id === a.id || (r.subject?.type === "approval" && r.subject.id === a.id);
  const records = page.data?.records.filter(about) ?? [];
  const explorer = `/chron${query({ ...span, order: "asc" })}`;
  return (
    <Section
      title="In Chron"
      busy={page.loading}
      actions={
        auditor ? (
          <Link className="button secondary" href={explorer}>
            This window in the Chron explorer
          </Link>
        ) : undefined
      }
    >
      {!auditor ? (
        <>
          <p className="muted">Reading Chron needs the auditor role. The decisions, by id:</p>
          <dl className="fields">
            <dt>Asked for by</dt>
            <dd>
              <code>{a.decision_id}</code>
            </dd>
            <dt>Used by</dt>
            <dd>{a.used_by_decision_id ? <code>{a.used_by_decision_id}</code> : <span className="muted">not used</span>}</dd>
          </dl>
        </>
      ) : (
        <>
          <p className="muted">
            Records of {a.agent.name} from <Time at={span.from} /> {span.to ? <>to <Time at={span.to} /></> : "until now"} that name this approval. Later ones (a use refused after
            its expiry) are in the explorer.
          </p>
          <Problem error={page.error} what="Chron could not be read" />
          {page.data?.next_cursor ? <p className="notice">More than 1000 records of this agent in that window: those after the first 1000 are in the explorer.</p> : null}
          {page.data && records.length === 0 ? <p className="muted">None that you may see.</p> : null}
          {records.length ? <DecisionTable records={records} agentColumn={false} step={(r) => (r.kind === "decision" ? step(r, a) : r.type)} /> : null}
        </>
      )}
    </Section>
  );
}

/** What a decision did with the approval. */
function step(r: ChronRecord, a: Approval): string {
  if (r.decision_id === a.decision_id) return "asked for it";
  if (r.decision_id === a.used_by_decision_id) return "used it";
  if (r.decision === "approval_required") return "asked again, answered with it";
  return "refused the use of it";
}
