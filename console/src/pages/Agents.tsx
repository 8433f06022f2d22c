import { useEffect, useState } from "react";
import { Link } from "wouter";
import { query, type Agent } from "../api";
import { OrgSelect } from "../components/records";
import { useApi, useTitle } from "../components/hooks";
import { Loading, Pager, Problem, Section, StatusBadge, Field } from "../components/ui";

const PAGE_SIZE = 25;

export function Agents() {
  useTitle("Agents");
  const [q, setQ] = useState("");
  const [text, setText] = useState("");
  const [status, setStatus] = useState("");
  const [organization, setOrganization] = useState("");
  const [stack, setStack] = useState<(string | null)[]>([null]);
  // The server searches; wait for the typing to pause.
  useEffect(() => {
    const t = setTimeout(() => setQ(text.trim()), 250);
    return () => clearTimeout(t);
  }, [text]);
  useEffect(() => setStack([null]), [q, status, organization]);
  const page = useApi<{ agents: Agent[]; next_cursor: string | null }>(
    `/v1/agents${query({ q, status, organization, limit: PAGE_SIZE, cursor: stack[stack.length - 1] })}`,
  );
  return (
    <>
      <h1>Agents</h1>
      <Section title="Inventory" busy={page.loading} actions={<Pager label="Agent pages" stack={stack} next={page.data?.next_cursor ?? null} onPage={setStack} />}>
        <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Find agents">
          <Field label="Name contains">
            {(id) => (
              <input id={id} type="search" value={text} onChange={(e) => setText(e.target.value)} />
            )}
          </Field>
          <Field label="Status">
            {(id) => (
              <select id={id} value={status} onChange={(e) => setStatus(e.target.value)}>
                <option value="">any</option>
                <option value="active">active</option>
                <option value="suspended">suspended</option>
                <option value="retired">retired</option>
              </select>
            )}
          </Field>
          <OrgSelect value={organization} onChange={setOrganization} />
        </form>
        <Problem error={page.error} what="The agents could not be read" />
        {page.loading && !page.data ? <Loading what="Reading the inventory" /> : null}
        {page.data ? (
          page.data.agents.length === 0 ? (
            <p className="muted">No agent matches.</p>
          ) : (
            <div className="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Agent</th>
                    <th scope="col">Organisation</th>
                    <th scope="col">Status</th>
                    <th scope="col">Accountable human</th>
                    <th scope="col">Skills</th>
                  </tr>
                </thead>
                <tbody>
                  {page.data.agents.map((a) => (
                    <tr key={a.id}>
                      <td>
                        <Link href={`/agents/${a.id}`}>{a.name}</Link>
                      </td>
                      <td>{a.organization}</td>
                      <td>
                        <StatusBadge status={a.status} />
                        {a.status_reason ? <span className="muted"> {a.status_reason}</span> : null}
                      </td>
                      <td>
                        {a.owner ? (
                          <>
                            {a.owner.name} <span className="muted">&lt;{a.owner.email}&gt;</span> {a.owner.status !== "active" ? <StatusBadge status={a.owner.status} /> : null}
                          </>
                        ) : (
                          <span className="badge bad">none</span>
                        )}
                      </td>
                      <td>{a.skills.map((s) => `${s.name}@${s.version}`).join(", ")}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )
        ) : null}
      </Section>
    </>
  );
}
