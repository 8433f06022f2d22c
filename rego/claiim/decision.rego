# CLAIIM reference policy: may this agent take this action on this resource, for this purpose?
#
# The input is built by CLAIIM from its own records (never from the agent's request body, except
# for the request itself):
#   input.agent              {id, name, status, organization, skills: {name: {version}}}
#   input.accountable_human  {id, name, email, status}, or null when the agent has none
#   input.request            {action, resource, purpose, skill: {name, version}}
#
# What each skill may do lives in data.claiim.skills (data.json), not in rules: a skill permits
# actions on resource patterns, and forbids others with a reason a human can read.
package claiim

# The entrypoint compiled to WebAssembly. A deny always carries at least one reason.
# WARNING: opa-wasm's sprintf knows no %q; quote with "%s" in raw strings instead.
decision := {"allow": true, "reasons": [permit_reason]} if {
	count(deny) == 0
	permitted
} else := {"allow": false, "reasons": sort([r | some r in deny])} if {
	count(deny) > 0
} else := {"allow": false, "reasons": [sprintf(
	`no rule permits action "%s" on resource "%s" under skill "%s"`,
	[input.request.action, input.request.resource, input.request.skill.name],
)]}

skill_name := input.request.skill.name

skill_policy := data.claiim.skills[skill_name]

matches(patterns) if {
	some pattern in patterns
	glob.match(pattern, ["/"], input.request.resource)
}

permitting_rule := rule if {
	some rule in skill_policy.permits
	rule.action == input.request.action
	matches(rule.resources)
}

permitted if permitting_rule

permit_reason := sprintf(`skill "%s" permits "%s" on "%s"`, [skill_name, input.request.action, input.request.resource])

deny contains sprintf(`agent "%s" is %s, not active`, [input.agent.name, input.agent.status]) if {
	input.agent.status != "active"
}

deny contains sprintf(`agent "%s" has no accountable human`, [input.agent.name]) if {
	not is_object(input.accountable_human)
}

deny contains sprintf(`accountable human "%s" is %s, not active`, [h.email, h.status]) if {
	h := input.accountable_human
	is_object(h)
	h.status != "active"
}

deny contains sprintf(`skill "%s" is not registered for agent "%s"`, [skill_name, input.agent.name]) if {
	not input.agent.skills[skill_name]
}

deny contains msg if {
	registered := input.agent.skills[skill_name].version
	registered != input.request.skill.version
	msg := sprintf(
		`skill "%s" version "%s" is not the registered version "%s"`,
		[skill_name, input.request.skill.version, registered],
	)
}

deny contains sprintf(`skill "%s" has no policy`, [skill_name]) if {
	input.agent.skills[skill_name]
	not skill_policy
}

deny contains rule.reason if {
	some rule in skill_policy.forbids
	rule.action == input.request.action
	matches(rule.resources)
}
