import { useId, useState, type ReactNode } from "react";
import type { ApiError } from "../api";

export function Problem({ error, what }: { error: ApiError | Error | null; what?: string }) {
  if (!error) return null;
  const api = error as ApiError;
  return (
    <div className="notice error" role="alert">
      <strong>{what ?? "The request failed"}:</strong> {error.message}
      {api.code ? <> (<code>{api.code}</code>)</> : null}
      {api.requestId ? <span className="muted"> · request {api.requestId}</span> : null}
    </div>
  );
}

export function Loading({ what = "Loading" }: { what?: string }) {
  return (
    <p className="muted" role="status">
      {what}…
    </p>
  );
}

/** The three outcomes told apart: allow, deny, and approval required (nothing allowed yet, a human must say yes). */
export function DecisionBadge({ decision }: { decision?: string | null }) {
  if (!decision) return <span className="badge neutral">event</span>;
  if (decision === "approval_required") return <span className="badge wait">approval required</span>;
  return <span className={`badge ${decision === "allow" ? "ok" : "bad"}`}>{decision}</span>;
}

/**
 * A decision's reasons, each with its stable code beside it (codes[i] is the code of reasons[i]).
 * Records written before reason codes existed have none: their reasons are shown alone.
 */
export function Reasons({ reasons, codes, list }: { reasons?: string[]; codes?: string[]; list?: boolean }) {
  const all = reasons ?? [];
  if (all.length === 0) return <span className="muted">—</span>;
  const one = (r: string, i: number) => (
    <>
      {codes?.[i] ? <code className="reason-code">{codes[i]}</code> : null} {r}
    </>
  );
  if (list) {
    return (
      <ul className="reasons">
        {all.map((r, i) => (
          <li key={i}>{one(r, i)}</li>
        ))}
      </ul>
    );
  }
  return (
    <>
      {all.map((r, i) => (
        <span key={i}>
          {i > 0 ? "; " : null}
          {one(r, i)}
        </span>
      ))}
    </>
  );
}

export function StatusBadge({ status }: { status: string }) {
  const tone = status === "active" ? "ok" : status === "suspended" || status === "deactivated" ? "bad" : "neutral";
  return <span className={`badge ${tone}`}>{status}</span>;
}

/** A time as Chron has it (UTC, to the millisecond), in a <time> element. */
export function Time({ at }: { at: string | null | undefined }) {
  if (!at) return <span className="muted">—</span>;
  return <time dateTime={at}>{at.replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC")}</time>;
}

export function Hash({ value, label }: { value: string; label?: string }) {
  return (
    <code className="hash" aria-label={label}>
      {value}
    </code>
  );
}

/** A command to copy, in full. */
export function Command({ lines, label }: { lines: string[]; label: string }) {
  const [copied, setCopied] = useState(false);
  const text = lines.join("\n");
  return (
    <div className="command">
      <pre aria-label={label}>
        <code>{text}</code>
      </pre>
      <button
        type="button"
        className="secondary"
        onClick={() => navigator.clipboard?.writeText(text).then(() => setCopied(true), () => setCopied(false))}
      >
        {copied ? "Copied" : "Copy"}
      </button>
    </div>
  );
}

/**
 * Cursor paging as the API does it: "Next" follows next_cursor; "Previous" goes back along the
 * cursors already followed. Nothing is counted or fetched beyond the page shown.
 */
export function Pager({ stack, next, onPage, label }: { stack: (string | null)[]; next: string | null; onPage(stack: (string | null)[]): void; label: string }) {
  const page = stack.length;
  return (
    <nav className="pager" aria-label={label}>
      <button type="button" className="secondary" disabled={page <= 1} onClick={() => onPage([null])}>
        First
      </button>
      <button type="button" className="secondary" disabled={page <= 1} onClick={() => onPage(stack.slice(0, -1))}>
        Previous
      </button>
      <span aria-live="polite">Page {page}</span>
      <button type="button" className="secondary" disabled={!next} onClick={() => next && onPage([...stack, next])}>
        Next
      </button>
    </nav>
  );
}

/** A titled card; `busy` while what it shows is being replaced (aria-busy). */
export function Section({ title, children, actions, id, busy }: { title: string; children: ReactNode; actions?: ReactNode; id?: string; busy?: boolean }) {
  const headingId = id ?? `h-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return (
    <section className="card" aria-labelledby={headingId} aria-busy={busy ?? false}>
      <div className="card-head">
        <h2 id={headingId}>{title}</h2>
        {actions}
      </div>
      {children}
    </section>
  );
}

/** A labelled form field: the label names the control by id (a wrapping label would name it with its options too). */
export function Field({ label, children }: { label: string; children(id: string): ReactNode }) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children(id)}
    </div>
  );
}
