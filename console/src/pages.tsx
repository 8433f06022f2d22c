import type { ComponentType } from "react";
import type { Role } from "./api";
import { Dashboard } from "./pages/Dashboard";
import { Explorer } from "./pages/Explorer";
import { RecordDetail } from "./pages/RecordDetail";
import { Agents } from "./pages/Agents";
import { AgentDetail } from "./pages/AgentDetail";
import { Policies } from "./pages/Policies";

export interface ConsolePage {
  path: string;
  /** Shown in the navigation when set. */
  label?: string;
  /** Who may open it (admin always may): the roles the API asks of the routes it reads. */
  roles: readonly Role[];
  component: ComponentType;
}

/**
 * Every page of the console, in navigation order. A page is one entry here: the navigation, the
 * router and the role check all read this list. Approvals (human approval, issue 13) will be one
 * more: { path: "/approvals", label: "Approvals", roles: ["approver"], component: Approvals },
 * reading GET /v1/approvals and posting .../approve or .../reject with a reason.
 */
export const PAGES: ConsolePage[] = [
  { path: "/", label: "Dashboard", roles: ["auditor"], component: Dashboard },
  { path: "/chron", label: "Chron explorer", roles: ["auditor"], component: Explorer },
  { path: "/chron/records/:seq", roles: ["auditor"], component: RecordDetail },
  { path: "/agents", label: "Agents", roles: ["agent_manager", "auditor"], component: Agents },
  { path: "/agents/:id", roles: ["agent_manager", "auditor"], component: AgentDetail },
  { path: "/policies", label: "Policies", roles: ["policy_author", "auditor"], component: Policies },
];
