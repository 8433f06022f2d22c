// Every route of the API, each pillar's in turn, and the OpenAPI document generated from them.
import type { Config } from "../config";
import { document, type RouteSpec } from "../http/route";
import { generateDocument, OpenAPIRegistry } from "../http/openapi";
import { systemRoutes, type Readiness } from "../http/system-routes";
import { metricsRoutes } from "../http/metrics-routes";
import { publishChronKey } from "../chron/signer";
import { witnessRoutes } from "../chron/witness-receiver";
import { chronRoutes } from "../chron/chron-routes";
import { identityRoutes } from "../identity/identity-routes";
import { inventoryRoutes } from "../identity/inventory-routes";
import { meRoutes } from "../identity/me-routes";
import { oauthRoutes } from "../identity/oauth-routes";
import { policyRoutes } from "../policy/policy-routes";
import { approvalRoutes } from "../approvals/approval-routes";
import { decisionRoutes } from "../decisions/decision-routes";
import { permissionRoutes } from "../decisions/permission-routes";
import type { chronPart } from "./chron";
import type { identityPart } from "./identity";
import type { policyPart } from "./policy";
import type { approvalPart, decisionPart } from "./decisions";
import type { opsPart } from "./ops";

export interface Parts {
  chron: ReturnType<typeof chronPart>;
  identity: ReturnType<typeof identityPart>;
  policy: ReturnType<typeof policyPart>;
  approvals: ReturnType<typeof approvalPart>;
  decisions: ReturnType<typeof decisionPart>;
  ops: ReturnType<typeof opsPart>;
}

/** The routes, and the OpenAPI document of them (served at /openapi.json by the system routes). */
export function routesOf(config: Config, parts: Parts, system: Pick<Readiness, "databaseAnswers" | "stopping">, version: string): RouteSpec[] {
  const { chron, identity, policy, approvals, decisions, ops } = parts;
  let openapi: unknown = null;
  const routes = [
    ...systemRoutes(
      {
        policyVersion: () => policy.engine.active()?.version ?? null,
        ...system,
        chron: ops.health,
        chronHalted: () => chron.writer.haltedBy()?.message ?? null,
        behind: () => chron.follower.problem(),
      },
      () => openapi,
    ),
    ...metricsRoutes(ops.metrics),
    // The JWKS holds the token keys, and every Chron checkpoint and bundle-signing key, so that old exports and bundles stay checkable.
    ...identityRoutes(identity, () => ({ keys: [...identity.minter.jwks().keys, ...chron.chronSigner.publicKeys().map(publishChronKey), ...policy.signer.jwks()] })),
    ...inventoryRoutes(identity.directory),
    ...meRoutes(identity.directory),
    ...oauthRoutes(identity.oauth, identity.credentials, config.keyOverlapSeconds, (address, clientId) => ops.limits.admitToken(address, clientId)),
    ...decisionRoutes(decisions.decisions),
    ...permissionRoutes(identity.directory, policy.engine),
    ...approvalRoutes(approvals.approvals, identity.directory, approvals.approvalDirectory, config.publicUrl),
    ...chronRoutes(chron.chron, chron.verifier, chron.exporter, chron.retention, identity.directory),
    ...witnessRoutes(chron.received),
    ...policyRoutes(policy.policies, policy.replays, config.bodyLimits.policy),
  ];
  const registry = new OpenAPIRegistry();
  document(registry, routes);
  openapi = generateDocument(registry, version);
  return routes;
}
