import { useEffect, useMemo, useState, type FormEvent } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { ApiError, download, query, type Agent, type ChronRecord, type Human, type RecordPage } from "../api";
import { OrgSelect, OutcomeCells, SubjectCells } from "../components/records";
import { useApi, useTitle } from "../components/hooks";
import { Picker } from "../components/picker";
import { Command, Loading, Pager, Problem, Section, Time, Field } from "../components/ui";
import { useFirstBad, VerifyBanner } from "../components/verify";

/** The explorer's filters: the API's own, kept in the address so a view can be linked to. */
const FILTERS = ["organization", "agent", "owner", "action", "decision", "policy_version", "kind", "from", "to"] as const;
type Filters = Partial<Record<(typeof FILTERS)[number] | "order", string>>;
const PAGE_SIZE = 50;

function read(search: string): Filters {
  const params = new URLSearchParams(search);
  const f: Filters = {};
  for (const k of [...FILTERS, "order"] as const) {
    const v = params.get(k);
    if (v) f[k] = v;
  }
  return f;
}

/** datetime-local (read as UTC) to RFC 3339 and back. */
const toRfc3339 = (local: string) => (local ? `${local.length === 16 ? `${local}:00` : local}Z` : "");
const toLocal = (rfc: string | undefined) => (rfc ? rfc.replace(/(\.\d+)?Z$/, "").slice(0, 19) : "");

export function Explorer() {
  useTitle("Chron explorer");
  const search = useSearch();
  const [, navigate] = useLocation();
  const applied = useMemo(() => read(search), [search]);
  const [form, setForm] = useState<Filters>(applied);
  const [stack, setStack] = useState<(string | null)[]>([null]);
  useEffect(() => {
    setForm(applied);
    setStack([null]);
  }, [applied]);

  const order = applied.order === "asc" ? "asc" : "desc";
  const cursor = stack[stack.length - 1];
  const page = useApi<RecordPage>(`/v1/chron/records${query({ ...applied, order, limit: PAGE_SIZE, cursor })}`);
  const firstBad = useFirstBad();

  const set = (k: keyof Filters, v: string | null) => setForm((f) => ({ ...f, [k]: v ?? undefined }));
  const apply = (e: FormEvent) => {
    e.preventDefault();
    navigate(`/chron${query(form)}`);
  };

  return (
    <>
      <h1>Chron explorer</h1>
      <VerifyBanner />
      <Section title="Filters">
        <form className="filters" onSubmit={apply} aria-label="Filters">
          <OrgSelect value={form.organization ?? ""} onChange={(slug) => set("organization", slug)} />
          <Picker<Agent>
            label="Agent"
            value={form.agent ?? null}
            onChange={(id) => set("agent", id)}
            searchPath={(q) => `/v1/agents${query({ q, limit: 10, organization: form.organization })}`}
            itemPath={(id) => `/v1/agents/${id}`}
            items={(r) => (r as { agents: Agent[] }).agents}
            option={(a) => ({ id: a.id, label: a.name, detail: `${a.organization} · ${a.status}` })}
          />
          <Picker<Human>
            label="Accountable human"
            value={form.owner ?? null}
            onChange={(id) => set("owner", id)}
            searchPath={(q) => `/v1/humans${query({ q, limit: 10, organization: form.organization })}`}
            itemPath={(id) => `/v1/humans/${id}`}
            items={(r) => (r as { humans: Human[] }).humans}
            option={(h) => ({ id: h.id, label: h.email, detail: `${h.name} · ${h.organization}` })}
          />
          <Field label="Action or event type">
            {(id) => (
              <input id={id} type="text" value={form.action ?? ""} onChange={(e) => set("action", e.target.value)} placeholder="deploy, agent.suspended…" />
            )}
          </Field>
          <Field label="Decision">
            {(id) => (
              <select id={id} value={form.decision ?? ""} onChange={(e) => set("decision", e.target.value)}>
                <option value="">any</option>
                <option value="allow">allow</option>
                <option value="deny">deny</option>
                <option value="approval_required">approval required</option>
              </select>
            )}
          </Field>
          <Field label="Kind">
            {(id) => (
              <select id={id} value={form.kind ?? ""} onChange={(e) => set("kind", e.target.value)}>
                <option value="">any</option>
                <option value="decision">decision</option>
                <option value="event">event (a change)</option>
              </select>
            )}
          </Field>
          <Field label="Policy version">
            {(id) => (
              <input id={id} type="number" min={1} value={form.policy_version ?? ""} onChange={(e) => set("policy_version", e.target.value)} />
            )}
          </Field>
          <Field label="From (UTC)">
            {(id) => (
              <input id={id} type="datetime-local" step={1} value={toLocal(form.from)} onChange={(e) => set("from", toRfc3339(e.target.value))} />
            )}
          </Field>
          <Field label="To, exclusive (UTC)">
            {(id) => (
              <input id={id} type="datetime-local" step={1} value={toLocal(form.to)} onChange={(e) => set("to", toRfc3339(e.target.value))} />
            )}
          </Field>
          <Field label="Order">
            {(id) => (
              <select id={id} value={form.order === "asc" ? "asc" : "desc"} onChange={(e) => set("order", e.target.value === "asc" ? "asc" : null)}>
                <option value="desc">newest first</option>
                <option value="asc">oldest first (chain order)</option>
              </select>
            )}
          </Field>
          <div className="filter-actions">
            <button type="submit">Apply filters</button>
            <button type="button" className="secondary" onClick={() => navigate("/chron")}>
              Clear
            </button>
          </div>
        </form>
      </Section>
      <Section title="Records" busy={page.loading} actions={<Pager label="Record pages" stack={stack} next={page.data?.next_cursor ?? null} onPage={setStack} />}>
        <Problem error={page.error} what="The records could not be read" />
        {page.loading && !page.data ? <Loading what="Reading Chron" /> : null}
        {page.data ? <RecordTable records={page.data.records} firstBad={firstBad} /> : null}
      </Section>
      <ExportPanel filters={applied} />
    </>
  );
}

function RecordTable({ records, firstBad }: { records: ChronRecord[]; firstBad: number | null }) {
  if (records.length === 0) return <p className="muted">No record matches these filters.</p>;
  return (
    <div className="table-wrap">
      <table className="records">
        <thead>
          <tr>
            <th scope="col">Record</th>
            <th scope="col">Time</th>
            <th scope="col">Organisation</th>
            <th scope="col">Agent</th>
            <th scope="col">Accountable human</th>
            <th scope="col">Action or event</th>
            <th scope="col">Resource</th>
            <th scope="col">Decision</th>
            <th scope="col">Reasons</th>
          </tr>
        </thead>
        <tbody>
          {records.map((r) => (
            <tr key={r.seq} className={r.seq === firstBad ? "first-bad" : undefined} data-seq={r.seq}>
              <td>
                <Link href={`/chron/records/${r.seq}`}>#{r.seq}</Link>
                {r.seq === firstBad ? <span className="badge bad">first bad record</span> : null}
              </td>
              <td>
                <Time at={r.timestamp} />
              </td>
              <td>{r.organization?.slug ?? "—"}</td>
              <td>{r.agent?.name ?? "—"}</td>
              <td>{r.accountable_human?.email ?? "—"}</td>
              <SubjectCells r={r} />
              <OutcomeCells r={r} />
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Downloads an export of what the filters select, and gives the command that checks it offline. */
function ExportPanel({ filters }: { filters: Filters }) {
  const [busy, setBusy] = useState<string | null>(null);
  const [done, setDone] = useState<{ filename: string; bytes: number } | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const { order: _order, ...selection } = filters;
  const selective = Object.keys(selection).some((k) => k !== "from" && k !== "to");
  const run = async (format: "ndjson" | "csv") => {
    setBusy(format);
    setError(null);
    setDone(null);
    try {
      setDone(await download(`/v1/chron/export${query({ ...selection, format })}`));
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(null);
    }
  };
  return (
    <Section title="Export for an auditor">
      <p>
        {selective
          ? "A selection: each record comes with its Merkle inclusion proof against the signed tree head."
          : "A contiguous range of the chain, with the signed checkpoints that cover it."}{" "}
        The export is signed and recorded in Chron; anyone can check it offline with the public keys.
      </p>
      <div className="row">
        <button type="button" onClick={() => run("ndjson")} disabled={busy !== null}>
          {busy === "ndjson" ? "Exporting…" : "Export NDJSON"}
        </button>
        <button type="button" onClick={() => run("csv")} disabled={busy !== null}>
          {busy === "csv" ? "Exporting…" : "Export CSV"}
        </button>
        <a className="button secondary" href="/.well-known/jwks.json" download="jwks.json">
          Download jwks.json
        </a>
      </div>
      <Problem error={error} what="The export failed" />
      {done ? (
        <div role="status" data-testid="export-done">
          <p>
            Downloaded <code>{done.filename}</code> ({done.bytes.toLocaleString("en")} bytes). Check it offline, in the CLAIIM folder:
          </p>
          <Command label="Verification command" lines={[`curl -s ${window.location.origin}/.well-known/jwks.json -o jwks.json`, `npx claiim-verify ${done.filename} --jwks jwks.json`]} />
        </div>
      ) : null}
    </Section>
  );
}
