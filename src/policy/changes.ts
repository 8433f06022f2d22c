// Who may change the policy, and the system actors Chron names when CLAIIM changes it itself.
import { NotAllowedError } from "../lib/errors";
import type { Actor, Scope } from "../shared/principal";

/** The policy applies to every organisation, so only a credential that spans all of them may change it. */
export function mayChangePolicy(scope: Scope): void {
  if (scope.orgId !== null) throw new NotAllowedError("organization_scope", "the policy applies to every organisation; only a key not confined to one may change it");
}

export const BOOTSTRAP: Actor = { type: "system", id: "bootstrap", name: "reference policies on first start" };
export const STARTUP: Actor = { type: "system", id: "startup", name: "activation of the stored active version at start-up" };
export const BOUNDS: Actor = { type: "system", id: "evaluation-bounds", name: "the evaluation deadline and memory limit" };

