import type { Scope } from "./principal";

/**
 * What Chron's reports need of the identity directory, to name what they count and to scope a
 * request to an organisation. The identity service implements it; Chron, below identity, only
 * knows this.
 */
export interface Names {
  /** The organisation a request is about (see IdentityService.organizationFilter). */
  organizationFilter(scope: Scope, slug?: string): string | undefined;
  organizationSlug(id: string): string | undefined;
  agentName(id: string): string | null;
  humanEmail(id: string): string | null;
}
