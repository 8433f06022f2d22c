// @claiim/sdk: CLAIIM for agents.
//
//   const claiim = new Claiim({ url, clientId, clientSecret });
//   await claiim.guard({ action: "deploy", resource: "staging", purpose: "release 1.4.0", skill: "deploy@1.2.0" }, () => deploy());
//
// guard() runs the function only on an allow; anything else throws DeniedError with the reasons
// and the decision_id. Nothing here ever turns a deny, an error or an unknown answer into an allow.
export { Claiim, parseDecision, notAllowed } from "./client";
export type { ClaiimOptions, DecisionRequest, DecideOptions, RetryOptions, Permissions, PermissionCell } from "./client";
export { ClaiimError, DeniedError, ApprovalRequiredError, AuthenticationError, RequestError, UnavailableError, ProtocolError } from "./errors";
export type { Decision, Reason, Approval } from "./errors";
