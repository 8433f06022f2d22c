import { useState, type FormEvent } from "react";
import { Link, useParams } from "wouter";
import { ApiError, postJson, query, type Agent, type Approval, type Permissions, type RecordPage } from "../api";
import { useApi, useTitle } from "../components/hooks";
import { DecisionBadge, Loading, Problem, Reasons, Section, StatusBadge, Time } from "../components/ui";
import { DecisionTable } from "../components/records";
import { ApprovalStatusBadge, Expiry } from "../components/approvals";
import { can, useSession } from "../session";

export function AgentDetail() {
  const { id } = useParams<{ id: string }>();
  const { me } = useSession();
  const agent = useApi<Agent>(`/v1/agents/${encodeURIComponent(id)}`);
  const permissions = useApi<Permissions>(agent.data ? `/v1/agents/${agent.data.id}/permissions` : null);
  const auditor = can(me, ["auditor"]);
  const decisions = useApi<RecordPage>(auditor && agent.data ? `/v1/chron/records${query({ agent: agent.data.id, kind: "decision", order: "desc", limit: 15 })}` : null);
  useTitle(agent.data ? `Agent ${agent.data.name}` : "Agent");
  const a = agent.data;
  return (
    <>
      <p>
        <Link href="/agents">← Agents</Link>
      </p>
      <Problem error={agent.error} what="The agent could not be read" />
      {agent.loading && !a ? <Loading what="Reading the agent" /> : null}
      {a ? (
        <>
          <div className="page-head">
            <h1>
              {a.name} <StatusBadge status={a.status} />
            </h1>
          </div>
          <Section title="Identity">
            <dl className="fields">
              <dt>Organisation</dt>
              <dd>{a.organization}</dd>
              <dt>Id</dt>
              <dd>
                <code>{a.id}</code>
              </dd>
              <dt>Description</dt>
              <dd>{a.description || <span className="muted">none</span>}</dd>
              <dt>Accountable human</dt>
              <dd>
                {a.owner ? (
                  <>
                    {a.owner.name} &lt;{a.owner.email}&gt; <StatusBadge status={a.owner.status} />
                  </>
                ) : (
                  "none"
                )}
              </dd>
              <dt>Status</dt>
              <dd>
                <StatusBadge status={a.status} /> {a.status_reason ? <span>reason: {a.status_reason}</span> : null}
              </dd>
              <dt>Skills</dt>
              <dd>
                <ul className="plain">
                  {a.skills.map((s) => (
                    <li key={s.name}>
                      {s.name} <code>{s.version}</code> <span className="muted">since <Time at={s.registered_at} /></span>
                    </li>
                  ))}
                </ul>
              </dd>
              <dt>Registered</dt>
              <dd>
                <Time at={a.created_at} />
              </dd>
            </dl>
          </Section>
          {can(me, ["agent_manager"]) ? <Lifecycle agent={a} onChange={agent.reload} /> : null}
          <OpenApprovals agent={a} />
          <Section title="Effective permissions" busy={permissions.loading}>
            <Problem error={permissions.error} what="The permissions could not be computed" />
            {permissions.data ? (
              <>
                <p className="muted">
                  The active policy
                  {permissions.data.policy ? ` (version ${permissions.data.policy.version})` : ""} evaluated over every action and resource its data declares for this agent&apos;s skills, for the purpose
                  “{permissions.data.purpose}”. Nothing is recorded.
                </p>
                <div className="table-wrap">
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">Skill</th>
                        <th scope="col">Action</th>
                        <th scope="col">Resource</th>
                        <th scope="col">Decision</th>
                        <th scope="col">Reasons</th>
                      </tr>
                    </thead>
                    <tbody>
                      {permissions.data.matrix.map((m) => (
                        <tr key={`${m.skill}/${m.action}/${m.resource}`}>
                          <td>
                            {m.skill}@{m.version}
                          </td>
                          <td>{m.action}</td>
                          <td>{m.resource}</td>
                          <td>
                            <DecisionBadge decision={m.decision ?? (m.allow ? "allow" : "deny")} />
                          </td>
                          <td>
                            <Reasons reasons={m.reasons} codes={m.reason_codes} />
                          </td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              </>
            ) : null}
          </Section>
          <Section
            title="Recent decisions"
            busy={decisions.loading}
            actions={
              auditor ? (
                <Link className="button secondary" href={`/chron${query({ agent: a.id })}`}>
                  All in the Chron explorer
                </Link>
              ) : undefined
            }
          >
            {!auditor ? (
              <p className="muted">Reading Chron needs the auditor role.</p>
            ) : (
              <>
                <Problem error={decisions.error} what="The decisions could not be read" />
                {decisions.data?.records.length === 0 ? <p className="muted">No decision recorded.</p> : null}
                {decisions.data && decisions.data.records.length > 0 ? (
                  <DecisionTable records={decisions.data.records} agentColumn={false} />
                ) : null}
              </>
            )}
          </Section>
        </>
      ) : null}
    </>
  );
}

/** Suspend (the kill switch) and reactivate, each with a reason that Chron records. */
function Lifecycle({ agent, onChange }: { agent: Agent; onChange(): void }) {
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const [done, setDone] = useState<string | null>(null);
  if (agent.status === "retired") return null;
  const action = agent.status === "active" ? "suspend" : "reactivate";
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const updated = await postJson<Agent>(`/v1/agents/${agent.id}/${action}`, { reason: reason.trim() });
      setDone(`${agent.name} is now ${updated.status}.`);
      setReason("");
      onChange();
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Section title="Lifecycle">
      <form onSubmit={submit} className="lifecycle">
        <p>
          {action === "suspend"
            ? "Suspending is the kill switch: the agent's very next decision is a deny."
            : "Reactivating needs an active accountable human."}{" "}
          The reason is recorded in Chron with your name.
        </p>
        <label htmlFor="lifecycle-reason">Reason</label>
        <input id="lifecycle-reason" type="text" required maxLength={1000} value={reason} onChange={(e) => setReason(e.target.value)} />
        <button type="submit" className={action === "suspend" ? "danger" : undefined} disabled={busy || !reason.trim()}>
          {action === "suspend" ? "Suspend agent" : "Reactivate agent"}
        </button>
      </form>
      <Problem error={error} what={`Could not ${action}`} />
      {done ? (
        <p role="status" className="notice">
          {done}
        </p>
      ) : null}
    </Section>
  );
}

/** What this agent waits for: its approvals still open (pending, or approved and not yet used). */
function OpenApprovals({ agent }: { agent: Agent }) {
  // One status at a time, as the API filters: closed approvals never crowd out an open one.
  const pending = useApi<{ approvals: Approval[] }>(`/v1/approvals${query({ agent: agent.id, status: "pending", limit: 100 })}`);
  const approved = useApi<{ approvals: Approval[] }>(`/v1/approvals${query({ agent: agent.id, status: "approved", limit: 100 })}`);
  const open = [...(pending.data?.approvals ?? []), ...(approved.data?.approvals ?? [])];
  const list = { loading: pending.loading || approved.loading, error: pending.error ?? approved.error, data: pending.data && approved.data };
  return (
    <Section
      title="Open approvals"
      busy={list.loading}
      actions={
        <Link className="button secondary" href={`/approvals${query({ agent: agent.id, status: "any", approver: "any" })}`}>
          All its approvals
        </Link>
      }
    >
      <Problem error={list.error} what="The approvals could not be read" />
      {list.data && open.length === 0 ? <p className="muted">None: {agent.name} waits for no human.</p> : null}
      {open.length ? (
        <ul className="plain">
          {open.map((a) => (
            <li key={a.id}>
              <Link href={`/approvals/${a.id}`}>
                {a.request.action} {a.request.resource}
              </Link>{" "}
              <ApprovalStatusBadge status={a.status} /> <span className="muted">expires</span> <Expiry approval={a} />
            </li>
          ))}
        </ul>
      ) : null}
    </Section>
  );
}
