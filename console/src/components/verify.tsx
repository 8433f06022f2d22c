import { useEffect } from "react";
import { Link } from "wouter";
import { useSession } from "../session";
import { Problem } from "./ui";

/**
 * The chain's verification status: green when every record and signed checkpoint verified, red
 * with the first bad record when one did not. Verification walks the whole chain on the server,
 * so it runs once per session and again on request, not on every page.
 */
export function VerifyBanner() {
  const { verification: v, verify } = useSession();
  useEffect(() => {
    if (!v.at && !v.running) verify();
  }, [v.at, v.running, verify]);
  const again = (
    <button type="button" className="secondary small" onClick={verify} disabled={v.running}>
      {v.running ? "Verifying…" : "Verify again"}
    </button>
  );
  if (v.error) {
    return (
      <div className="banner neutral" data-testid="verify-banner" data-state="error">
        <Problem error={v.error} what="Verification could not run" /> {again}
      </div>
    );
  }
  if (!v.result) {
    return (
      <div className="banner neutral" role="status" data-testid="verify-banner" data-state="running">
        Verifying the whole chain and its signed checkpoints…
      </div>
    );
  }
  const r = v.result;
  const when = v.at ? v.at.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "";
  if (r.valid) {
    return (
      <div className="banner ok" role="status" data-testid="verify-banner" data-state="valid">
        <span>
          <strong>Chain valid.</strong> {r.checked} records and {r.checkpoints.checked} signed checkpoints verified
          {r.head ? <> up to record #{r.head.seq}</> : null}, at {when}.
        </span>
        {again}
      </div>
    );
  }
  const bad = r.first_bad!;
  return (
    <div className="banner bad" role="alert" data-testid="verify-banner" data-state="invalid">
      <span>
        <strong>Chain broken at record #{bad.seq}:</strong> {bad.problem}. {r.checked} records verified before it, at {when}.{" "}
        <Link href={`/chron/records/${bad.seq}`}>Open record #{bad.seq}</Link>
      </span>
      {again}
    </div>
  );
}

/** The first bad record of the last verification, if any. */
export function useFirstBad(): number | null {
  const { verification } = useSession();
  return verification.result && !verification.result.valid ? (verification.result.first_bad?.seq ?? null) : null;
}
