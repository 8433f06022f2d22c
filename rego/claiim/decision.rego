# CLAIIM reference policy: may this agent take this action on this resource, for this purpose?
#
# The input is built by CLAIIM from its own records (never from the agent's request body, except
# for the request itself):
#   input.agent              {id, name, status, organization, skills: {name: {version}}}
#   input.accountable_human  {id, name, email, status}, or null when the agent has none
#   input.request            {action, resource, purpose, skill: {name, version}}
#
# What each skill may do lives in data.claiim.skills (data.json), not in rules: a skill permits
# actions on resource patterns, forbids others with a reason a human can read, and asks a human
# to approve some (requires_approval: who approves, and how long the request stays open).
#
# The answer is {allow, reasons, reason_codes} and, when a human must say yes first,
# {"allow": false, ..., "approval": {"approvers": {...}, "ttl_seconds": n}}. reason_codes[i] is the
# stable, machine-readable code of reasons[i] (see the README's table of reason codes).
package claiim

# The entrypoint compiled to WebAssembly. A deny always carries at least one reason.
# Precedence: a denial wins over everything, then a required approval, then a permit.
# WARNING: opa-wasm's sprintf knows no %q; quote with "%s" in raw strings instead.
decision := {"allow": true, "reasons": [permit_reason], "reason_codes": ["permitted_by_skill"]} if {
	count(deny) == 0
	not approval_rule
	permitted
} else := {"allow": false, "reasons": [d[0] | some d in denials], "reason_codes": [d[1] | some d in denials]} if {
	count(deny) > 0
} else := {
	"allow": false,
	"reasons": [approval_rule.reason],
	"reason_codes": ["approval_required"],
	"approval": {
		"approvers": object.get(approval_rule, "approvers", {"accountable_human": true}),
		"ttl_seconds": object.get(approval_rule, "ttl_seconds", 3600),
	},
} if {
	approval_rule
} else := {
	"allow": false, "reasons": [sprintf(
		`no rule permits action "%s" on resource "%s" under skill "%s"`,
		[input.request.action, input.request.resource, input.request.skill.name],
	)],
	"reason_codes": ["no_rule_permits"],
}

# Denials as [reason, code] pairs, sorted by their text.
denials := sort([[d.reason, d.code] | some d in deny])

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

# The first rule of the skill that asks for a human's approval of this request, if any.
approval_rules := [rule |
	some rule in skill_policy.requires_approval
	rule.action == input.request.action
	matches(rule.resources)
]

approval_rule := approval_rules[0]

deny contains {"code": concat("_", ["agent", input.agent.status]), "reason": sprintf(`agent "%s" is %s, not active`, [input.agent.name, input.agent.status])} if {
	input.agent.status != "active"
}

deny contains {"code": "owner_missing", "reason": sprintf(`agent "%s" has no accountable human`, [input.agent.name])} if {
	not is_object(input.accountable_human)
}

deny contains {"code": "owner_inactive", "reason": sprintf(`accountable human "%s" is %s, not active`, [h.email, h.status])} if {
	h := input.accountable_human
	is_object(h)
	h.status != "active"
}

deny contains {"code": "skill_not_registered", "reason": sprintf(`skill "%s" is not registered for agent "%s"`, [skill_name, input.agent.name])} if {
	not input.agent.skills[skill_name]
}

deny contains {"code": "skill_version_mismatch", "reason": msg} if {
	registered := input.agent.skills[skill_name].version
	registered != input.request.skill.version
	msg := sprintf(
		`skill "%s" version "%s" is not the registered version "%s"`,
		[skill_name, input.request.skill.version, registered],
	)
}

deny contains {"code": "skill_without_policy", "reason": sprintf(`skill "%s" has no policy`, [skill_name])} if {
	input.agent.skills[skill_name]
	not skill_policy
}

# A forbidding rule may name its own code; by default it is forbidden_by_skill.
deny contains {"code": object.get(rule, "code", "forbidden_by_skill"), "reason": rule.reason} if {
	some rule in skill_policy.forbids
	rule.action == input.request.action
	matches(rule.resources)
}
