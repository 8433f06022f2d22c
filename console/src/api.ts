// The console talks to CLAIIM's public API only, with the credential the user signed in with.

/** An RFC 9457 problem from the API, or a failure to reach it. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | null = null,
  ) {
    super(message);
  }
}

// WARNING: the credential lives in this module's memory only, for the life of the tab: never in
// localStorage, sessionStorage, a cookie or the URL. A reload signs the user out.
let credential: string | null = null;
let onUnauthorized: (problem: ApiError) => void = () => undefined;

export function setCredential(value: string | null): void {
  credential = value;
}

export function hasCredential(): boolean {
  return credential !== null;
}

/** Called when the API refuses the credential (expired, revoked): the session ends. */
export function whenUnauthorized(handler: (problem: ApiError) => void): void {
  onUnauthorized = handler;
}

async function problemOf(res: Response): Promise<ApiError> {
  let body: { code?: string; detail?: string; request_id?: string } = {};
  try {
    body = await res.json();
  } catch {
    // not a problem document
  }
  return new ApiError(res.status, body.code ?? `http_${res.status}`, body.detail ?? res.statusText ?? "request failed", body.request_id ?? res.headers.get("x-request-id"));
}

async function send(path: string, init: RequestInit = {}, token: string | null = credential): Promise<Response> {
  const headers = new Headers(init.headers);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  let res: Response;
  try {
    res = await fetch(path, { ...init, headers, credentials: "omit", cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, "network_error", `CLAIIM could not be reached: ${(err as Error).message}`);
  }
  if (!res.ok) {
    const problem = await problemOf(res);
    if (res.status === 401 && token === credential) onUnauthorized(problem);
    throw problem;
  }
  return res;
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  return (await send(path, { signal })).json() as Promise<T>;
}

export async function postJson<T>(path: string, body: unknown): Promise<T> {
  const res = await send(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  return (res.status === 204 ? undefined : res.json()) as Promise<T>;
}

/** Asks who a credential belongs to, before it becomes the session's. */
export async function whoIs(token: string): Promise<Me> {
  return (await send("/v1/me", {}, token)).json() as Promise<Me>;
}

/** A download the API streams (an export): fetched with the credential, handed to the browser as a file. */
export async function download(path: string): Promise<{ filename: string; bytes: number }> {
  const res = await send(path);
  const disposition = res.headers.get("content-disposition") ?? "";
  const filename = /filename="([^"]+)"/.exec(disposition)?.[1] ?? "claiim-export";
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  try {
    const a = document.createElement("a");
    a.href = url;
    a.download = filename;
    document.body.append(a);
    a.click();
    a.remove();
  } finally {
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }
  return { filename, bytes: blob.size };
}

/** A query string from the given fields, leaving out empty ones. */
export function query(fields: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

// --- what the API returns (see GET /openapi.json) ---

export type Role = "admin" | "policy_author" | "agent_manager" | "auditor" | "approver";

export interface Me {
  kind: "api_key" | "human";
  id: string;
  name: string;
  roles: Role[];
  organization: string | null;
}

export interface Organization {
  id: string;
  slug: string;
  name: string;
}

export interface Agent {
  id: string;
  organization: string;
  name: string;
  description: string;
  owner: { id: string; name: string; email: string; status: string } | null;
  status: "active" | "suspended" | "retired";
  status_reason: string | null;
  skills: { name: string; version: string; registered_at: string }[];
  created_at: string;
  updated_at: string;
}

export interface Human {
  id: string;
  organization: string;
  name: string;
  email: string;
  status: string;
}

/** approval_required: nothing is allowed yet; a human must approve this exact request first. */
export type Decision = "allow" | "deny" | "approval_required";

/** Who answered an approval: the credential that called, and the human it is or spoke for. */
export interface ApproverRef {
  actor: { type: string; id: string; name: string };
  human: { id: string; name: string; email: string } | null;
}

/** An approval as a decision record names it. */
export interface DecisionApproval {
  id: string;
  status: string;
  expires_at: string;
  requested_decision_id?: string;
  approvers?: { accountable_human: boolean; roles: string[]; humans: string[] };
  approved_by?: ApproverRef;
  approved_at?: string;
}

export interface ChronRecord {
  seq: number;
  kind: "decision" | "event";
  timestamp: string;
  hash: string;
  prev_hash: string;
  decision_id?: string;
  event_id?: string;
  organization?: { id: string; slug: string } | null;
  agent?: { id: string; name: string; status?: string } | null;
  accountable_human?: { id: string; name: string; email: string; status?: string } | null;
  action?: string;
  resource?: string;
  purpose?: string;
  decision?: Decision;
  reasons?: string[];
  /** reason_codes[i] is the stable code of reasons[i]; absent from records written before codes existed. */
  reason_codes?: string[];
  /** The approval this decision asked for (approval_required), spent (allow) or refused to use (deny). */
  approval?: DecisionApproval;
  /** What the policy answered, when an approval made the decision differ from it. */
  policy_decision?: Decision;
  policy?: { version: number; revision: string; digest: string } | null;
  type?: string;
  actor?: { type: string; id: string; name: string };
  subject?: { type: string; id: string; name: string };
  reason?: string | null;
  [field: string]: unknown;
}

export interface RecordPage {
  records: ChronRecord[];
  next_cursor: string | null;
}

export interface Verification {
  valid: boolean;
  checked: number;
  head: { seq: number; hash: string } | null;
  checkpoints: { checked: number; last: { seq: number; hash: string } | null };
  first_bad?: { seq: number; problem: string; expected?: string; found?: string };
}

type Tally = { allow: number; deny: number; approval_required: number };
/** Approvals asked for, approved, rejected, expired and spent (approval.* events in Chron). */
export type ApprovalTally = { requested: number; approved: number; rejected: number; expired: number; used: number };
export interface Summary {
  from: string;
  to: string;
  organization: string | null;
  totals: Tally & { approvals: ApprovalTally };
  days: (Tally & {
    day: string;
    approvals: ApprovalTally;
    by_agent: (Tally & { agent_id: string | null; agent_name: string | null })[];
    by_accountable_human: (Tally & { human_id: string | null; email: string | null })[];
    by_action: (Tally & { action: string | null })[];
    by_policy_version: (Tally & { version: number | null })[];
  })[];
}

export interface Permissions {
  agent: { id: string; name: string; status: string };
  policy: { version: number; revision: string } | null;
  purpose: string;
  matrix: { skill: string; version: string; action: string; resource: string; allow: boolean; decision: Decision; reasons: string[]; reason_codes: string[] }[];
}

export interface PolicyVersion {
  version: number;
  parent: number | null;
  revision: string;
  digest: string;
  message: string;
  created_by: string;
  created_at: string;
  active: boolean;
}

export interface PolicyStatus {
  active_version: number | null;
  active_revision: string | null;
  last_successful_activation: string | null;
  activated_by: string | null;
  active_signed_by: string | null;
  shadow: { version: number; revision: string | null; since: string; set_by: string; evaluating: boolean } | null;
  errors: { message: string; at: string }[];
  decisions: { version: number | null; revision: string | null; count: number }[];
}

export interface PolicyDiff {
  from: number;
  to: number;
  added: string[];
  removed: string[];
  changed: { file: string; diff: string }[];
  unchanged: number;
}

type ShadowTally = { evaluated: number; disagreements: number; allow_to_deny: number; deny_to_allow: number; approval_changes: number };
export interface ShadowReport extends ShadowTally {
  shadow_version: number;
  from: string;
  to: string | null;
  by_action: (ShadowTally & { action: string })[];
  by_agent: (ShadowTally & { agent: { id: string; name: string } })[];
}

export interface ReplayChange {
  seq: number;
  timestamp: string;
  agent: { id: string; name: string };
  action: string;
  resource: string;
  recorded: { decision: Decision; reasons: string[] };
  replayed: { decision: Decision; reasons: string[] };
}

export interface Replay {
  id: string;
  version: number;
  from: string;
  to: string;
  requested_by: string;
  state: "running" | "done" | "failed";
  started_at: string;
  finished_at: string | null;
  error: string | null;
  progress: { processed: number; total: number };
  unchanged: number;
  allow_to_deny: { count: number; records: ReplayChange[] };
  deny_to_allow: { count: number; records: ReplayChange[] };
  /** Neither version allows, but one denies where the other asks for a human's approval. */
  approval_changes: { count: number; records: ReplayChange[] };
  truncated: boolean;
}

export type ApprovalStatus = "pending" | "approved" | "rejected" | "expired" | "used";

/** An approval as GET /v1/approvals shows it: the exact request, who may answer, and where it stands. */
export interface Approval {
  id: string;
  status: ApprovalStatus;
  organization: string;
  agent: { id: string; name: string };
  accountable_human: { id: string; name: string; email: string } | null;
  request: {
    action: string;
    resource: string;
    purpose: string;
    skill: { name: string; version: string };
    on_behalf_of: { subject: string } | null;
  };
  reasons: string[];
  approvers: { accountable_human: { id: string; name: string; email: string } | null; roles: string[]; humans: string[] };
  decision_id: string;
  policy_version: number | null;
  created_at: string;
  expires_at: string;
  decided_at: string | null;
  decided_by: { type: string; id: string; name: string; human: { id: string; name: string; email: string } | null } | null;
  decision_reason: string | null;
  used_at: string | null;
  used_by_decision_id: string | null;
  webhook: {
    state: "none" | "pending" | "delivered" | "failed";
    attempts: number;
    last_attempt_at: string | null;
    next_attempt_at: string | null;
    last_error: string | null;
    delivered_at: string | null;
  };
  url: string;
  approve_url: string;
  reject_url: string;
}
