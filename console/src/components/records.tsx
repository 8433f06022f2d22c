import type { ReactNode } from "react";
import { Link } from "wouter";
import type { ChronRecord, Organization } from "../api";
import { useApi } from "./hooks";
import { DecisionBadge, Reasons, Time, Field } from "./ui";

/**
 * Records, each linking to its record page: the dashboard's latest denials, an agent's recent
 * decisions, an approval's steps. With `step`, a column saying what each record did replaces the
 * action and resource (the same request throughout, shown above it); an event shows its type there.
 */
export function DecisionTable({ records, agentColumn, step }: { records: ChronRecord[]; agentColumn: boolean; step?: (r: ChronRecord) => ReactNode }) {
  return (
    <table className="records">
      <thead>
        <tr>
          <th scope="col">Record</th>
          <th scope="col">Time</th>
          {agentColumn ? <th scope="col">Agent</th> : null}
          {step ? (
            <th scope="col">Step</th>
          ) : (
            <>
              <th scope="col">Action</th>
              <th scope="col">Resource</th>
            </>
          )}
          <th scope="col">Decision</th>
          <th scope="col">Reasons</th>
        </tr>
      </thead>
      <tbody>
        {records.map((r) => (
          <tr key={r.seq} data-seq={r.seq}>
            <td>
              <Link href={`/chron/records/${r.seq}`}>#{r.seq}</Link>
            </td>
            <td>
              <Time at={r.timestamp} />
            </td>
            {agentColumn ? <td>{r.agent?.name}</td> : null}
            {step ? (
              <td>{step(r)}</td>
            ) : (
              <SubjectCells r={r} />
            )}
            <OutcomeCells r={r} />
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** A record's action and resource cells; an event shows its type and its subject there. */
export function SubjectCells({ r }: { r: ChronRecord }) {
  return (
    <>
      <td>{r.kind === "decision" ? r.action : r.type}</td>
      <td>{r.kind === "decision" ? r.resource : (r.subject?.name ?? "")}</td>
    </>
  );
}

/** A record's decision and reasons cells; an event shows its reason. */
export function OutcomeCells({ r }: { r: ChronRecord }) {
  return (
    <>
      <td>
        <DecisionBadge decision={r.decision} />
      </td>
      <td>{r.kind === "decision" ? <Reasons reasons={r.reasons} codes={r.reason_codes} /> : (r.reason ?? "")}</td>
    </>
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
