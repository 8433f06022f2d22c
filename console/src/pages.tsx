import type { ComponentType } from "react";
import type { Role } from "./api";
import { Dashboard } from "./pages/Dashboard";
import { Explorer } from "./pages/Explorer";
import { RecordDetail } from "./pages/RecordDetail";
import { Agents } from "./pages/Agents";
import { AgentDetail } from "./pages/AgentDetail";
import { Policies } from "./pages/Policies";
import { APPROVALS_ROLES, Approvals } from "./pages/Approvals";
import { ApprovalDetail } from "./pages/ApprovalDetail";

export interface ConsolePage {
  path: string;
  /** Shown in the navigation when set. */
  label?: string;
  /** Who may open it (admin always may): the roles the API asks of the routes it reads. */
  roles: readonly Role[];
  /** Any human signed in with the identity provider may open it too, whatever their roles (the API decides what they see). */
  humans?: boolean;
  component: ComponentType;
}

/**
 * Every page of the console, in navigation order. A page is one entry here: the navigation, the
 * router and the role check all read this list. The roles are those of the API: admin, auditor,
 * agent_manager, policy_author and approver (Role in api.ts); humans signed in with the identity
 * provider open Approvals without a role, to answer the approvals that name them.
 */
export const PAGES: ConsolePage[] = [
  { path: "/", label: "Dashboard", roles: ["auditor"], component: Dashboard },
  { path: "/chron", label: "Chron explorer", roles: ["auditor"], component: Explorer },
  { path: "/chron/records/:seq", roles: ["auditor"], component: RecordDetail },
  { path: "/agents", label: "Agents", roles: ["agent_manager", "auditor"], component: Agents },
  { path: "/agents/:id", roles: ["agent_manager", "auditor"], component: AgentDetail },
  { path: "/approvals", label: "Approvals", roles: APPROVALS_ROLES, humans: true, component: Approvals },
  { path: "/approvals/:id", roles: APPROVALS_ROLES, humans: true, component: ApprovalDetail },
  { path: "/policies", label: "Policies", roles: ["policy_author", "auditor"], component: Policies },
];
