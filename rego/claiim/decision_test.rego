package claiim_test

import data.claiim

agent(skills) := {
	"id": "a-1", "name": "bot", "status": "active", "organization": "acme",
	"skills": skills,
}

human := {"id": "h-1", "name": "Alice", "email": "alice@example.com", "status": "active"}

req(action, resource, skill, version) := {
	"agent": agent({skill: {"version": version}}),
	"accountable_human": human,
	"request": {
		"action": action, "resource": resource, "purpose": "test",
		"skill": {"name": skill, "version": version},
	},
}

# object.union merges recursively, so replacing a whole sub-document takes a remove first.
replace(i, key, value) := object.union(object.remove(i, [key]), {key: value})

allowed(i) if claiim.decision.allow with input as i

denied_with(i, reason) if {
	d := claiim.decision with input as i
	d.allow == false
	reason in d.reasons
	not d.approval
}

# A deny whose reason carries this code, at the same position.
denied_with_code(i, reason, code) if {
	d := claiim.decision with input as i
	d.allow == false
	some k, r in d.reasons
	r == reason
	d.reason_codes[k] == code
	not d.approval
}

# Not allowed yet: a human must approve first.
approval_required(i, reason) if {
	d := claiim.decision with input as i
	d.allow == false
	d.reasons == [reason]
	d.reason_codes == ["approval_required"]
	d.approval == {"approvers": {"accountable_human": true}, "ttl_seconds": 3600}
}

test_devops_deploy_staging_allowed if allowed(req("deploy", "staging", "deploy", "1.2.0"))

test_devops_deploy_staging_service_allowed if allowed(req("deploy", "staging/web", "deploy", "1.2.0"))

test_devops_deploy_production_requires_approval if approval_required(
	req("deploy", "production", "deploy", "1.2.0"),
	"deploying to production requires a change approved by a human",
)

test_devops_deploy_production_service_requires_approval if approval_required(
	req("deploy", "production/web", "deploy", "1.2.0"),
	"deploying to production requires a change approved by a human",
)

test_support_draft_allowed if allowed(req("draft_response", "ticket/123", "customer-support", "2.0.0"))

test_support_send_requires_approval if approval_required(
	req("send_response", "ticket/123", "customer-support", "2.0.0"),
	"a customer response must be reviewed by a human before it is sent",
)

test_finance_read_allowed if allowed(req("read_report", "report/q3", "finance-reporting", "1.0.0"))

test_finance_payment_denied_outright if denied_with_code(
	req("execute_payment", "vendor/acme-supplies", "finance-reporting", "1.0.0"),
	"payments are executed by a human in finance, never by an agent",
	"forbidden_by_skill",
)

test_hr_summarize_allowed if allowed(req("summarize_document", "policy-doc/leave", "hr-assistant", "1.0.0"))

test_hr_sensitive_denied if denied_with(
	req("read_employee_record", "employee/42", "hr-assistant", "1.0.0"),
	"employee records are sensitive: only HR staff may access them",
)

test_legal_analysis_allowed if allowed(req("analyze_document", "document/nda-7", "legal-analysis", "1.0.0"))

test_legal_disclosure_denied if denied_with(
	req("disclose_externally", "document/nda-7", "legal-analysis", "1.0.0"),
	"external disclosure requires sign-off by counsel",
)

test_code_review_comment_allowed if allowed(req("comment_pull_request", "repo/api", "code-review", "1.0.0"))

test_code_review_merge_denied if denied_with(
	req("merge_pull_request", "repo/api", "code-review", "1.0.0"),
	"merging requires approval by a human reviewer",
)

test_unlisted_action_denied_with_reason if denied_with_code(
	req("delete", "staging", "deploy", "1.2.0"),
	`no rule permits action "delete" on resource "staging" under skill "deploy"`,
	"no_rule_permits",
)

test_suspended_agent_denied if {
	i := req("deploy", "staging", "deploy", "1.2.0")
	denied_with_code(replace(i, "agent", object.union(i.agent, {"status": "suspended"})), `agent "bot" is suspended, not active`, "agent_suspended")
}

test_unregistered_skill_denied if {
	i := replace(req("deploy", "staging", "deploy", "1.2.0"), "agent", agent({"code-review": {"version": "1.0.0"}}))
	denied_with_code(i, `skill "deploy" is not registered for agent "bot"`, "skill_not_registered")
}

test_other_skill_version_denied if {
	i := replace(req("deploy", "staging", "deploy", "1.3.0"), "agent", agent({"deploy": {"version": "1.2.0"}}))
	denied_with_code(i, `skill "deploy" version "1.3.0" is not the registered version "1.2.0"`, "skill_version_mismatch")
}

test_no_accountable_human_denied if {
	i := replace(req("deploy", "staging", "deploy", "1.2.0"), "accountable_human", null)
	denied_with_code(i, `agent "bot" has no accountable human`, "owner_missing")
}

test_inactive_human_denied if {
	i := object.union(req("deploy", "staging", "deploy", "1.2.0"), {"accountable_human": object.union(human, {"status": "deactivated"})})
	denied_with_code(i, `accountable human "alice@example.com" is deactivated, not active`, "owner_inactive")
}

test_skill_without_policy_denied if denied_with_code(
	req("deploy", "staging", "teleport", "1.0.0"),
	`skill "teleport" has no policy`,
	"skill_without_policy",
)

test_deny_wins_over_permit if {
	d := claiim.decision with input as req("deploy", "staging", "deploy", "1.2.0")
		with data.claiim.skills.deploy.forbids as [{"action": "deploy", "resources": ["*"], "reason": "freeze"}]
	d == {"allow": false, "reasons": ["freeze"], "reason_codes": ["forbidden_by_skill"]}
}

test_every_deny_has_a_reason if {
	d := claiim.decision with input as req("deploy", "nowhere", "deploy", "1.2.0")
	d.allow == false
	count(d.reasons) > 0
}

test_allow_has_a_code if {
	d := claiim.decision with input as req("deploy", "staging", "deploy", "1.2.0")
	d == {"allow": true, "reasons": [`skill "deploy" permits "deploy" on "staging"`], "reason_codes": ["permitted_by_skill"]}
}

test_every_reason_has_a_code if {
	i := replace(req("deploy", "production", "deploy", "1.3.0"), "agent", object.union(agent({"deploy": {"version": "1.2.0"}}), {"status": "suspended"}))
	d := claiim.decision with input as i
	count(d.reasons) == 2
	count(d.reason_codes) == count(d.reasons)
	d.reason_codes == ["agent_suspended", "skill_version_mismatch"]
}

test_a_forbidding_rule_may_name_its_code if {
	d := claiim.decision with input as req("deploy", "staging", "deploy", "1.2.0")
		with data.claiim.skills.deploy.forbids as [{"action": "deploy", "resources": ["*"], "reason": "freeze", "code": "change_freeze"}]
	d.reason_codes == ["change_freeze"]
}

# A denial is final: no approval can lift it, so none is asked for.
test_denial_wins_over_approval if {
	i := req("deploy", "production", "deploy", "1.2.0")
	d := claiim.decision with input as replace(i, "agent", object.union(i.agent, {"status": "suspended"}))
	d.allow == false
	not d.approval
	d.reason_codes == ["agent_suspended"]
}

test_inactive_owner_gets_no_approval if {
	i := object.union(req("deploy", "production", "deploy", "1.2.0"), {"accountable_human": object.union(human, {"status": "deactivated"})})
	d := claiim.decision with input as i
	not d.approval
	d.reason_codes == ["owner_inactive"]
}

test_forbid_wins_over_approval if {
	d := claiim.decision with input as req("deploy", "production", "deploy", "1.2.0")
		with data.claiim.skills.deploy.forbids as [{"action": "deploy", "resources": ["production"], "reason": "freeze"}]
	d == {"allow": false, "reasons": ["freeze"], "reason_codes": ["forbidden_by_skill"]}
}

# A resource that is both permitted and under approval needs the approval.
test_approval_wins_over_permit if approval_required(
	req("deploy", "production", "deploy", "1.2.0"),
	"deploying to production requires a change approved by a human",
) with data.claiim.skills.deploy.permits as [{"action": "deploy", "resources": ["*"]}]

test_approval_rule_defaults_and_own_approvers if {
	d := claiim.decision with input as req("deploy", "production", "deploy", "1.2.0")
		with data.claiim.skills.deploy.requires_approval as [
			{"action": "deploy", "resources": ["production"], "reason": "CAB"},
			{"action": "deploy", "resources": ["*"], "reason": "second", "approvers": {"roles": ["approver"]}},
		]
	d == {
		"allow": false, "reasons": ["CAB"], "reason_codes": ["approval_required"],
		"approval": {"approvers": {"accountable_human": true}, "ttl_seconds": 3600},
	}
	e := claiim.decision with input as req("deploy", "staging", "deploy", "1.2.0")
		with data.claiim.skills.deploy.requires_approval as [{"action": "deploy", "resources": ["staging"], "reason": "r", "approvers": {"humans": ["bob@example.com"]}, "ttl_seconds": 60}]
	e.approval == {"approvers": {"humans": ["bob@example.com"]}, "ttl_seconds": 60}
}

test_payments_never_ask_for_approval if {
	d := claiim.decision with input as req("execute_payment", "vendor/x", "finance-reporting", "1.0.0")
	not d.approval
}
