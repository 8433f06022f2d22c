// The policy lifecycle's public shapes (OPA-style status, versions, diffs) and the pure functions
// that make them: no state, no I/O but reading a folder of sources.
import fs from "node:fs/promises";
import path from "node:path";
import { createTwoFilesPatch } from "diff";
import type { PolicySources } from "./compiler";
import type { BundleSummary, PolicyState } from "./policy-store";
import type { ActivePolicy } from "./policy-engine";
import type { EvaluationPool } from "./evaluation/pool";
import type { PoolStats } from "./evaluation/types";

export interface PublishRequest {
  files: PolicySources;
  message: string;
  activate: boolean;
}

export interface PolicyVersionView {
  version: number;
  parent: number | null;
  revision: string;
  digest: string;
  file_sha256: string;
  message: string;
  created_by: string;
  created_at: string;
  active: boolean;
}

export interface PolicyDiff {
  from: number;
  to: number;
  added: string[];
  removed: string[];
  changed: { file: string; diff: string }[];
  unchanged: number;
}

export interface PolicyStatus {
  name: string;
  active_version: number | null;
  active_revision: string | null;
  active_digest: string | null;
  /** kid of the bundle-signing key whose signature on the active bundle was verified at activation. */
  active_signed_by: string | null;
  last_successful_activation: string | null;
  activated_by: string | null;
  /** Shadow mode; `evaluating` is false when the shadow failed verification at start-up. */
  shadow: (Omit<ShadowView, "revision"> & { revision: string | null; evaluating: boolean; bounds_exceeded: number }) | null;
  errors: { message: string; at: string }[];
  /** The bounds of every evaluation, and how often they were reached since this process started. */
  evaluation: { timeout_ms: number; max_memory_mb: number } & PoolStats;
  /** Decisions made under each revision, from Chron. */
  decisions: { version: number | null; revision: string | null; count: number }[];
}

export interface ShadowView {
  version: number;
  revision: string;
  since: string;
  set_by: string;
}


/** The view of a stored version; `active` says whether it is the version deciding now. */
export function versionView(b: BundleSummary, activeVersion: number | null): PolicyVersionView {
  return {
    version: b.version,
    parent: b.parent,
    revision: b.revision,
    digest: b.digest,
    file_sha256: b.fileSha256,
    message: b.message,
    created_by: b.createdBy,
    created_at: b.createdAt.toISOString(),
    active: activeVersion === b.version,
  };
}

/** What changed from version `against` to version `version`: files added, removed, and unified diffs of the changed ones. */
export function diffSources(from: { sources: PolicySources }, to: { sources: PolicySources }, against: number, version: number): PolicyDiff {
    const names = [...new Set([...Object.keys(from.sources), ...Object.keys(to.sources)])].sort();
    const result: PolicyDiff = { from: against, to: version, added: [], removed: [], changed: [], unchanged: 0 };
    for (const name of names) {
      const a = from.sources[name];
      const b = to.sources[name];
      if (a === undefined) result.added.push(name);
      else if (b === undefined) result.removed.push(name);
      else if (a === b) result.unchanged += 1;
      else result.changed.push({ file: name, diff: createTwoFilesPatch(`${against}/${name}`, `${version}/${name}`, a, b) });
    }
    return result;
}

export async function readPolicyDir(dir: string): Promise<PolicySources> {
  const sources: PolicySources = {};
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const name = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(name);
      else if (entry.isFile() && /\.(rego|json|ya?ml)$/.test(entry.name)) sources[name] = await fs.readFile(path.join(dir, name), "utf8");
    }
  };
  await walk("");
  return sources;
}


/** The bundle CLAIIM serves and activates: OPA's bundle name for it. */
export const BUNDLE_NAME = "claiim";

/** OPA-style bundle status, from the stored state and what is loaded now. */
export function statusView(s: {
  state: PolicyState;
  active: ActivePolicy | null;
  /** The version the evaluation workers hold as the shadow, if any. */
  shadowEvaluating: number | null;
  revisions: Map<number, string>;
  decisions: { version: number | null; count: number }[];
  pool: Pick<EvaluationPool, "limits" | "stats">;
}): PolicyStatus {
  const { state, active, revisions } = s;
  return {
    name: BUNDLE_NAME,
    active_version: active?.version ?? null,
    active_revision: active?.revision ?? null,
    active_digest: active?.digest ?? null,
    active_signed_by: active?.signedBy ?? null,
    last_successful_activation: active?.activatedAt.toISOString() ?? null,
    activated_by: active ? state.activatedBy : null,
    shadow: state.shadow
      ? {
          version: state.shadow.version,
          revision: revisions.get(state.shadow.version) ?? null,
          since: state.shadow.since.toISOString(),
          set_by: state.shadow.by,
          evaluating: s.shadowEvaluating === state.shadow.version,
          bounds_exceeded: state.shadowTrips,
        }
      : null,
    errors: state.lastError && state.lastErrorAt ? [{ message: state.lastError, at: state.lastErrorAt.toISOString() }] : [],
    decisions: s.decisions.map((d) => ({ version: d.version, revision: d.version === null ? null : (revisions.get(d.version) ?? null), count: d.count })),
    evaluation: { timeout_ms: s.pool.limits.timeoutMs, max_memory_mb: Math.round(s.pool.limits.maxMemoryBytes / 1048576), ...s.pool.stats() },
  };
}
