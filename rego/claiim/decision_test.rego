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
}

test_devops_deploy_staging_allowed if allowed(req("deploy", "staging", "deploy", "1.2.0"))

test_devops_deploy_staging_service_allowed if allowed(req("deploy", "staging/web", "deploy", "1.2.0"))

test_devops_deploy_production_denied if denied_with(
	req("deploy", "production", "deploy", "1.2.0"),
	"deploying to production requires a change approved by a human",
)

test_support_draft_allowed if allowed(req("draft_response", "ticket/123", "customer-support", "2.0.0"))

test_support_send_denied if denied_with(
	req("send_response", "ticket/123", "customer-support", "2.0.0"),
	"a customer response must be reviewed by a human before it is sent",
)

test_finance_read_allowed if allowed(req("read_report", "report/q3", "finance-reporting", "1.0.0"))

test_finance_payment_denied if denied_with(
	req("execute_payment", "vendor/acme-supplies", "finance-reporting", "1.0.0"),
	"payments are executed by a human in finance, never by an agent",
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

test_unlisted_action_denied_with_reason if denied_with(
	req("delete", "staging", "deploy", "1.2.0"),
	`no rule permits action "delete" on resource "staging" under skill "deploy"`,
)

test_suspended_agent_denied if {
	i := req("deploy", "staging", "deploy", "1.2.0")
	denied_with(replace(i, "agent", object.union(i.agent, {"status": "suspended"})), `agent "bot" is suspended, not active`)
}

test_unregistered_skill_denied if {
	i := replace(req("deploy", "staging", "deploy", "1.2.0"), "agent", agent({"code-review": {"version": "1.0.0"}}))
	denied_with(i, `skill "deploy" is not registered for agent "bot"`)
}

test_other_skill_version_denied if {
	i := replace(req("deploy", "staging", "deploy", "1.3.0"), "agent", agent({"deploy": {"version": "1.2.0"}}))
	denied_with(i, `skill "deploy" version "1.3.0" is not the registered version "1.2.0"`)
}

test_no_accountable_human_denied if {
	i := replace(req("deploy", "staging", "deploy", "1.2.0"), "accountable_human", null)
	denied_with(i, `agent "bot" has no accountable human`)
}

test_inactive_human_denied if {
	i := object.union(req("deploy", "staging", "deploy", "1.2.0"), {"accountable_human": object.union(human, {"status": "deactivated"})})
	denied_with(i, `accountable human "alice@example.com" is deactivated, not active`)
}

test_skill_without_policy_denied if denied_with(
	req("deploy", "staging", "teleport", "1.0.0"),
	`skill "teleport" has no policy`,
)

test_deny_wins_over_permit if {
	d := claiim.decision with input as req("deploy", "staging", "deploy", "1.2.0")
		with data.claiim.skills.deploy.forbids as [{"action": "deploy", "resources": ["*"], "reason": "freeze"}]
	d == {"allow": false, "reasons": ["freeze"]}
}

test_every_deny_has_a_reason if {
	d := claiim.decision with input as req("deploy", "nowhere", "deploy", "1.2.0")
	d.allow == false
	count(d.reasons) > 0
}
