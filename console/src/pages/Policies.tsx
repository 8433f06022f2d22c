import { useEffect, useMemo, useState, type FormEvent } from "react";
import { Link } from "wouter";
import { ApiError, postJson, query, type PolicyDiff, type PolicyStatus, type PolicyVersion, type RecordPage, type Replay, type ShadowReport } from "../api";
import { useApi, useTitle } from "../components/hooks";
import { Loading, Problem, Section, Time, Field } from "../components/ui";
import { can, useSession } from "../session";

export function Policies() {
  useTitle("Policies");
  const { me } = useSession();
  const status = useApi<PolicyStatus>("/v1/policies/status");
  const versions = useApi<{ versions: PolicyVersion[] }>("/v1/policies");
  // Who published and who activated each version, by name, is in Chron (policy.* events), which auditors read.
  const auditor = can(me, ["auditor"]);
  const published = usePolicyEvents(auditor, "policy.published");
  const activatedBy = usePolicyEvents(auditor, "policy.activated");
  const s = status.data;
  const list = versions.data?.versions ?? [];

  return (
    <>
      <h1>Policies</h1>
      <Problem error={status.error} what="The policy status could not be read" />
      {s ? (
        <Section title="Active and shadow versions">
          <dl className="fields">
            <dt>Active</dt>
            <dd data-testid="active-version">
              {s.active_version === null ? <span className="badge bad">none</span> : <>version {s.active_version}</>} <code>{s.active_revision}</code>
            </dd>
            <dt>Activated</dt>
            <dd>
              <Time at={s.last_successful_activation} /> by {s.activated_by ?? "—"}
            </dd>
            <dt>Bundle signed by</dt>
            <dd>
              <code>{s.active_signed_by ?? "—"}</code>
            </dd>
            <dt>Shadow</dt>
            <dd data-testid="shadow-version">
              {s.shadow ? (
                <>
                  version {s.shadow.version} since <Time at={s.shadow.since} />, set by {s.shadow.set_by}
                  {s.shadow.evaluating ? null : <span className="badge bad">not evaluating: it failed verification</span>}
                </>
              ) : (
                "none"
              )}
            </dd>
          </dl>
          {s.errors.length ? (
            <div className="notice error" role="alert">
              <strong>Activation errors:</strong>
              <ul>
                {s.errors.map((e) => (
                  <li key={e.at}>
                    <Time at={e.at} />: {e.message}
                  </li>
                ))}
              </ul>
            </div>
          ) : null}
        </Section>
      ) : null}
      <Section title="Versions" busy={versions.loading || published.loading || activatedBy.loading}>
        <Problem error={versions.error} what="The versions could not be read" />
        {versions.loading && !versions.data ? <Loading /> : null}
        {list.length ? (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Version</th>
                  <th scope="col">Parent</th>
                  <th scope="col">Message</th>
                  <th scope="col">Published</th>
                  <th scope="col">Activations</th>
                  <th scope="col">State</th>
                </tr>
              </thead>
              <tbody>
                {[...list].reverse().map((v) => (
                  <tr key={v.version}>
                    <td>
                      {v.version} <code className="muted">{v.revision.slice(0, 18)}…</code>
                    </td>
                    <td>{v.parent ?? "—"}</td>
                    <td>{v.message}</td>
                    <td>
                      {published.byVersion.get(String(v.version))?.[0]?.who ?? v.created_by}, <Time at={v.created_at} />
                    </td>
                    <td>
                      {!auditor ? (
                        <span className="muted">in Chron (auditor role)</span>
                      ) : (activatedBy.byVersion.get(String(v.version)) ?? []).length === 0 ? (
                        <span className="muted">never</span>
                      ) : (
                        <ul className="plain">
                          {activatedBy.byVersion.get(String(v.version))!.map((a) => (
                            <li key={a.at}>
                              {a.who}, <Time at={a.at} />
                            </li>
                          ))}
                        </ul>
                      )}
                    </td>
                    <td>
                      {v.active ? <span className="badge ok">active</span> : null}
                      {s?.shadow?.version === v.version ? <span className="badge neutral">shadow</span> : null}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
      </Section>
      {list.length > 1 ? <DiffView versions={list} /> : null}
      {s?.shadow ? <ShadowSection /> : null}
      <Replays versions={list} canStart={can(me, ["policy_author"])} />
    </>
  );
}

/** Chron's events of one type about policy versions, newest first, by version: who and when. */
function usePolicyEvents(enabled: boolean, type: string): { byVersion: Map<string, { who: string; at: string }[]>; loading: boolean } {
  const events = useApi<RecordPage>(enabled ? `/v1/chron/records${query({ kind: "event", action: type, order: "desc", limit: 200 })}` : null);
  const byVersion = useMemo(() => {
    const map = new Map<string, { who: string; at: string }[]>();
    for (const r of events.data?.records ?? []) {
      const v = r.subject?.id ?? "";
      map.set(v, [...(map.get(v) ?? []), { who: r.actor?.name ?? "?", at: r.timestamp }]);
    }
    return map;
  }, [events.data]);
  return { byVersion, loading: events.loading };
}

function VersionSelect({ label, versions, value, onChange }: { label: string; versions: PolicyVersion[]; value: string; onChange(v: string): void }) {
  return (
    <Field label={label}>
      {(id) => (
        <select id={id} value={value} onChange={(e) => onChange(e.target.value)}>
          {versions.map((v) => (
            <option key={v.version} value={v.version}>
              version {v.version}
            </option>
          ))}
        </select>
      )}
    </Field>
  );
}

function DiffView({ versions }: { versions: PolicyVersion[] }) {
  const last = versions[versions.length - 1].version;
  const [from, setFrom] = useState(String(versions[versions.length - 2].version));
  const [to, setTo] = useState(String(last));
  const [shown, setShown] = useState<{ from: string; to: string } | null>(null);
  const diff = useApi<PolicyDiff>(shown ? `/v1/policies/${shown.to}/diff${query({ against: shown.from })}` : null);
  return (
    <Section title="Compare two versions">
      <form
        className="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setShown({ from, to });
        }}
      >
        <VersionSelect label="From" versions={versions} value={from} onChange={setFrom} />
        <VersionSelect label="To" versions={versions} value={to} onChange={setTo} />
        <div className="filter-actions">
          <button type="submit">Show the diff</button>
        </div>
      </form>
      <Problem error={diff.error} what="The diff could not be computed" />
      {diff.data ? (
        <div data-testid="policy-diff">
          <p>
            From version {diff.data.from} to {diff.data.to}: {diff.data.added.length} added, {diff.data.removed.length} removed, {diff.data.changed.length} changed,{" "}
            {diff.data.unchanged} unchanged.
          </p>
          {diff.data.added.map((f) => (
            <p key={f}>
              <span className="badge ok">added</span> <code>{f}</code>
            </p>
          ))}
          {diff.data.removed.map((f) => (
            <p key={f}>
              <span className="badge bad">removed</span> <code>{f}</code>
            </p>
          ))}
          {diff.data.changed.map((c) => (
            <figure key={c.file} className="diff">
              <figcaption>
                <code>{c.file}</code>
              </figcaption>
              <pre tabIndex={0} aria-label={`Changes to ${c.file}`}>
                {c.diff.split("\n").map((line, i) => (
                  <span key={i} className={line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : undefined}>
                    {line}
                  </span>
                ))}
              </pre>
            </figure>
          ))}
        </div>
      ) : null}
    </Section>
  );
}

function ShadowSection() {
  const report = useApi<ShadowReport>("/v1/policies/shadow/report?samples=0");
  const r = report.data;
  return (
    <Section title="Shadow report">
      <Problem error={report.error} what="The shadow report could not be read" />
      {report.loading && !r ? <Loading what="Comparing the shadow with the decisions made" /> : null}
      {r ? (
        <>
          <p data-testid="shadow-report">
            Version {r.shadow_version} since <Time at={r.from} />: {r.evaluated} decisions evaluated, {r.disagreements} disagreements ({r.allow_to_deny} allow→deny, {r.deny_to_allow}{" "}
            deny→allow, {r.approval_changes} between deny and approval required).
          </p>
          {r.by_action.length ? (
            <table>
              <caption>Disagreements by action</caption>
              <thead>
                <tr>
                  <th scope="col">Action</th>
                  <th scope="col">Evaluated</th>
                  <th scope="col">Allow→deny</th>
                  <th scope="col">Deny→allow</th>
                  <th scope="col">Deny↔approval</th>
                </tr>
              </thead>
              <tbody>
                {r.by_action.map((a) => (
                  <tr key={a.action}>
                    <th scope="row">{a.action}</th>
                    <td>{a.evaluated}</td>
                    <td>{a.allow_to_deny}</td>
                    <td>{a.deny_to_allow}</td>
                    <td>{a.approval_changes}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : null}
        </>
      ) : null}
    </Section>
  );
}

function Replays({ versions, canStart }: { versions: PolicyVersion[]; canStart: boolean }) {
  const replays = useApi<{ replays: Replay[] }>("/v1/policies/replays");
  const running = replays.data?.replays.some((r) => r.state === "running") ?? false;
  // A running replay is polled until it ends.
  useEffect(() => {
    if (!running) return;
    const t = setInterval(replays.reload, 1500);
    return () => clearInterval(t);
  }, [running, replays.reload]);
  const [open, setOpen] = useState<string | null>(null);
  return (
    <Section title="Replays" busy={replays.loading}>
      <p className="muted">What a version would have decided on recorded decisions. Replays are kept in memory: a restart forgets them.</p>
      {canStart && versions.length ? <StartReplay versions={versions} onStarted={replays.reload} /> : null}
      <Problem error={replays.error} what="The replays could not be read" />
      {replays.data?.replays.length === 0 ? <p className="muted">No replay has run since CLAIIM started.</p> : null}
      {replays.data?.replays.length ? (
        <table data-testid="replays">
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Window</th>
              <th scope="col">By</th>
              <th scope="col">State</th>
              <th scope="col">Unchanged</th>
              <th scope="col">Allow→deny</th>
              <th scope="col">Deny→allow</th>
              <th scope="col">Deny↔approval</th>
              <th scope="col">Changes</th>
            </tr>
          </thead>
          <tbody>
            {replays.data.replays.map((r) => (
              <ReplayRow key={r.id} replay={r} open={open === r.id} onToggle={() => setOpen(open === r.id ? null : r.id)} />
            ))}
          </tbody>
        </table>
      ) : null}
    </Section>
  );
}

function ReplayRow({ replay: r, open, onToggle }: { replay: Replay; open: boolean; onToggle(): void }) {
  const changes = [
    ...r.allow_to_deny.records.map((c) => ({ ...c, dir: `allow→${c.replayed.decision}` })),
    ...r.deny_to_allow.records.map((c) => ({ ...c, dir: `${c.recorded.decision}→allow` })),
    ...r.approval_changes.records.map((c) => ({ ...c, dir: `${c.recorded.decision}→${c.replayed.decision}` })),
  ];
  return (
    <>
      <tr>
        <td>{r.version}</td>
        <td>
          <Time at={r.from} /> – <Time at={r.to} />
        </td>
        <td>{r.requested_by}</td>
        <td>
          {r.state}
          {r.state === "running" ? ` (${r.progress.processed} of ${r.progress.total})` : ""}
          {r.error ? `: ${r.error}` : ""}
        </td>
        <td>{r.unchanged}</td>
        <td>{r.allow_to_deny.count}</td>
        <td>{r.deny_to_allow.count}</td>
        <td>{r.approval_changes.count}</td>
        <td>
          {changes.length ? (
            <button type="button" className="secondary small" aria-expanded={open} onClick={onToggle}>
              {open ? "Hide" : "Show"} {changes.length}
            </button>
          ) : (
            "none"
          )}
        </td>
      </tr>
      {open ? (
        <tr>
          <td colSpan={9}>
            <table>
              <caption>Decisions that version {r.version} would change{r.truncated ? " (the first ones; counts are complete)" : ""}</caption>
              <thead>
                <tr>
                  <th scope="col">Record</th>
                  <th scope="col">Agent</th>
                  <th scope="col">Action</th>
                  <th scope="col">Resource</th>
                  <th scope="col">Change</th>
                  <th scope="col">Replayed reasons</th>
                </tr>
              </thead>
              <tbody>
                {changes.map((c) => (
                  <tr key={c.seq}>
                    <td>
                      <Link href={`/chron/records/${c.seq}`}>#{c.seq}</Link>
                    </td>
                    <td>{c.agent.name}</td>
                    <td>{c.action}</td>
                    <td>{c.resource}</td>
                    <td>{c.dir}</td>
                    <td>{c.replayed.reasons.join("; ")}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </td>
        </tr>
      ) : null}
    </>
  );
}

function StartReplay({ versions, onStarted }: { versions: PolicyVersion[]; onStarted(): void }) {
  const [version, setVersion] = useState(String(versions[versions.length - 1].version));
  const [days, setDays] = useState("7");
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await postJson(`/v1/policies/${version}/replay`, { from: new Date(Date.now() - Number(days) * 86_400_000).toISOString() });
      onStarted();
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="filters" onSubmit={submit} aria-label="Start a replay">
      <VersionSelect label="Version" versions={versions} value={version} onChange={setVersion} />
      <Field label="Over the last">
        {(id) => (
          <select id={id} value={days} onChange={(e) => setDays(e.target.value)}>
            <option value="1">day</option>
            <option value="7">7 days</option>
            <option value="30">30 days</option>
          </select>
        )}
      </Field>
      <div className="filter-actions">
        <button type="submit" disabled={busy}>
          Start replay
        </button>
      </div>
      <Problem error={error} what="The replay could not start" />
    </form>
  );
}
