// @claiim/sdk: CLAIIM for agents.
//
//   const claiim = new Claiim({ url, clientId, clientSecret });
//   await claiim.guard({ action: "deploy", resource: "staging", purpose: "release 1.4.0", skill: "deploy@1.2.0" }, () => deploy());
//   await claiim.guard(production, () => deploy(), { waitForApproval: { timeoutMs: 10 * 60_000 } });
//
// guard() runs the function only on an allow; anything else throws DeniedError with the reasons
// and the decision_id. With waitForApproval, an approval_required answer waits for the human and
// asks again with the approval. Nothing here ever turns a deny, an error or an unknown answer into
// an allow.
export { Claiim, parseDecision, notAllowed } from "./client";
export type { ClaiimOptions, DecisionRequest, DecideOptions, RetryOptions, Permissions, PermissionCell } from "./client";
export type { WaitOptions } from "./approval-wait";
export {
  ClaiimError,
  DeniedError,
  ApprovalRequiredError,
  ApprovalWaitError,
  ApprovalRejectedError,
  ApprovalExpiredError,
  ApprovalTimeoutError,
  AuthenticationError,
  RequestError,
  UnavailableError,
  ProtocolError,
} from "./errors";
export type { Decision, Reason, Approval, Approvers } from "./errors";
