import { Link } from "wouter";
import type { ChronRecord, Organization } from "../api";
import { useApi } from "./hooks";
import { DecisionBadge, Reasons, Time, Field } from "./ui";

/** Decisions, each linking to its record: the dashboard's latest denials, an agent's recent decisions. */
export function DecisionTable({ records, agentColumn }: { records: ChronRecord[]; agentColumn: boolean }) {
  return (
    <table className="records">
      <thead>
        <tr>
          <th scope="col">Record</th>
          <th scope="col">Time</th>
          {agentColumn ? <th scope="col">Agent</th> : null}
          <th scope="col">Action</th>
          <th scope="col">Resource</th>
          <th scope="col">Decision</th>
          <th scope="col">Reasons</th>
        </tr>
      </thead>
      <tbody>
        {records.map((r) => (
          <tr key={r.seq}>
            <td>
              <Link href={`/chron/records/${r.seq}`}>#{r.seq}</Link>
            </td>
            <td>
              <Time at={r.timestamp} />
            </td>
            {agentColumn ? <td>{r.agent?.name}</td> : null}
            <td>{r.action}</td>
            <td>{r.resource}</td>
            <td>
              <DecisionBadge decision={r.decision} />
            </td>
            <td>
              <Reasons reasons={r.reasons} codes={r.reason_codes} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The organisations this credential may see, as a filter (a confined key sees its own only). */
export function OrgSelect({ value, onChange }: { value: string; onChange(slug: string): void }) {
  const orgs = useApi<{ organizations: Organization[] }>("/v1/organizations");
  return (
    <Field label="Organisation">
      {(id) => (
        <select id={id} value={value} onChange={(e) => onChange(e.target.value)}>
          <option value="">all</option>
          {orgs.data?.organizations.map((o) => (
            <option key={o.id} value={o.slug}>
              {o.name} ({o.slug})
            </option>
          ))}
        </select>
      )}
    </Field>
  );
}
