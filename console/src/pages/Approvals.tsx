import { useEffect, useMemo, useState, type FormEvent } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { query, type Agent, type Approval, type Me, type Role } from "../api";
import { ApprovalStatusBadge, Expiry, WhoMayAnswer } from "../components/approvals";
import { OrgSelect } from "../components/records";
import { useApi, useTitle } from "../components/hooks";
import { Picker } from "../components/picker";
import { Field, Loading, Problem, Section } from "../components/ui";
import { can, useSession } from "../session";

/** The roles GET /v1/approvals admits (admin always), besides any signed-in human. */
export const APPROVALS_ROLES: readonly Role[] = ["approver", "auditor", "agent_manager"];

const STATUSES = ["pending", "approved", "rejected", "expired", "used"] as const;
const PAGE = 100;
/** The API lists at most this many at once (approvals held in memory: open, or closed within a day). */
const MOST = 1000;

/** The API's filters; "" is no filter. approver is "me", an email, or "". */
type Filters = { status: string; organization: string; agent: string; approver: string };

/**
 * The filters, kept in the address so that a view can be linked to. A signed-in human starts on
 * what waits for them (pending, approver=me); everyone else on everything pending they may read.
 * "any" in the address is a default cleared on purpose.
 */
function read(search: string, me: Me | null): Filters {
  const p = new URLSearchParams(search);
  const given = (k: string, fallback: string) => {
    const v = p.get(k) ?? fallback;
    return v === "any" ? "" : v;
  };
  return { status: given("status", "pending"), organization: given("organization", ""), agent: given("agent", ""), approver: given("approver", me?.kind === "human" ? "me" : "") };
}

function address(f: Filters): string {
  return `/approvals${query({ status: f.status || "any", organization: f.organization, agent: f.agent, approver: f.approver || "any" })}`;
}

/** The form: who may answer is chosen first (anyone, me, a human by email), the email apart. */
type Form = Omit<Filters, "approver"> & { who: "" | "me" | "named"; email: string };
const formOf = (f: Filters): Form => ({ ...f, who: f.approver === "" || f.approver === "me" ? f.approver : "named", email: f.approver === "" || f.approver === "me" ? "" : f.approver });
const filtersOf = ({ who, email, ...f }: Form): Filters => ({ ...f, approver: who === "named" ? email.trim() : who });

export function Approvals() {
  useTitle("Approvals");
  const { me } = useSession();
  const search = useSearch();
  const [, navigate] = useLocation();
  const applied = useMemo(() => read(search, me), [search, me]);
  const [form, setForm] = useState<Form>(formOf(applied));
  const [limit, setLimit] = useState(PAGE);
  useEffect(() => {
    setForm(formOf(applied));
    setLimit(PAGE);
  }, [applied]);
  const list = useApi<{ approvals: Approval[] }>(`/v1/approvals${query({ ...applied, limit })}`);
  const set = <K extends keyof Form>(k: K, v: Form[K]) => setForm((f) => ({ ...f, [k]: v }));
  const apply = (e: FormEvent) => {
    e.preventDefault();
    navigate(address(filtersOf(form)));
  };
  // Organisations and agents are named for those who may read them; an approver key reads approvals only.
  const readsInventory = can(me, ["auditor", "agent_manager"]);
  const rows = list.data?.approvals ?? [];

  return (
    <>
      <div className="page-head">
        <h1>Approvals</h1>
        <button type="button" className="secondary" onClick={list.reload} disabled={list.loading}>
          Refresh
        </button>
      </div>
      <p className="muted">
        Requests of agents that wait for a human to say yes to that very request. An approval is answered once, before it expires, and the agent may then make the request it
        names once. {me?.kind === "human" ? "You start on those that wait for your answer." : null}
        {me?.roles.includes("approver") && me.kind === "api_key"
          ? ` This key answers for organisation ${me.organization}: in its own right where the policy names the approver role, otherwise relaying the answer of a human the approval names.`
          : null}
      </p>
      <Section title="Filters">
        <form className="filters" onSubmit={apply} aria-label="Filters">
          <Field label="Status">
            {(id) => (
              <select id={id} value={form.status} onChange={(e) => set("status", e.target.value)}>
                <option value="">any</option>
                {STATUSES.map((s) => (
                  <option key={s} value={s}>
                    {s}
                  </option>
                ))}
              </select>
            )}
          </Field>
          {readsInventory && !me?.organization ? <OrgSelect value={form.organization} onChange={(slug) => set("organization", slug)} /> : null}
          {readsInventory ? (
            <Picker<Agent>
              label="Agent"
              value={form.agent || null}
              onChange={(id) => set("agent", id ?? "")}
              searchPath={(q) => `/v1/agents${query({ q, limit: 10, organization: form.organization })}`}
              itemPath={(id) => `/v1/agents/${id}`}
              items={(r) => (r as { agents: Agent[] }).agents}
              option={(a) => ({ id: a.id, label: a.name, detail: `${a.organization} · ${a.status}` })}
            />
          ) : null}
          <Field label="Who may answer">
            {(id) => (
              <select id={id} value={form.who} onChange={(e) => set("who", e.target.value as Form["who"])}>
                <option value="">anyone</option>
                <option value="me">me</option>
                <option value="named">a human, by email</option>
              </select>
            )}
          </Field>
          {form.who === "named" ? (
            <Field label="Approver's email">
              {(id) => <input id={id} type="email" required maxLength={320} value={form.email} onChange={(e) => set("email", e.target.value)} />}
            </Field>
          ) : null}
          <div className="filter-actions">
            <button type="submit">Apply filters</button>
          </div>
        </form>
        {applied.agent && !readsInventory ? (
          <p>
            Approvals of one agent only. <Link href={address({ ...applied, agent: "" })}>Show every agent</Link>
          </p>
        ) : null}
      </Section>
      <Section title="Requests" busy={list.loading}>
        <Problem error={list.error} what="The approvals could not be read" />
        {list.loading && !list.data ? <Loading what="Reading the approvals" /> : null}
        {list.data && rows.length === 0 ? <p className="muted">No approval matches{applied.status === "pending" ? ": nothing waits" : ""}.</p> : null}
        {rows.length ? (
          <div className="table-wrap">
            <table className="approvals">
              <thead>
                <tr>
                  <th scope="col">Request</th>
                  <th scope="col">Status</th>
                  <th scope="col">Organisation</th>
                  <th scope="col">Agent</th>
                  <th scope="col">Accountable human</th>
                  <th scope="col">Who may answer</th>
                  <th scope="col">Expires</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((a) => (
                  <tr key={a.id} data-approval={a.id}>
                    <td>
                      <Link href={`/approvals/${a.id}`}>
                        {a.request.action} {a.request.resource}
                      </Link>
                      <div className="muted">
                        “{a.request.purpose}”, {a.request.skill.name}@{a.request.skill.version}
                      </div>
                    </td>
                    <td>
                      <ApprovalStatusBadge status={a.status} />
                    </td>
                    <td>{a.organization}</td>
                    <td>
                      <Link href={address({ ...applied, agent: a.agent.id })}>{a.agent.name}</Link>
                    </td>
                    <td>{a.accountable_human ? a.accountable_human.email : "—"}</td>
                    <td>
                      <WhoMayAnswer approvers={a.approvers} />
                    </td>
                    <td>
                      <Expiry approval={a} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
        {rows.length >= limit && limit < MOST ? (
          <button type="button" className="secondary" onClick={() => setLimit(Math.min(MOST, limit + PAGE))}>
            Show more
          </button>
        ) : null}
        {rows.length >= MOST ? <p className="muted">The first {MOST}, newest first: narrow the filters to see the others.</p> : null}
        <p className="hint">
          An agent&apos;s name shows its approvals only. Listed here: approvals open, or closed within a day of their expiry. Older ones are in Chron (the explorer&apos;s approval.* events), and each by its address.
        </p>
      </Section>
    </>
  );
}
