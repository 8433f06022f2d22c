/**
 * The reference policy set without its tests: the versions these tests publish change what the
 * reference tests assert (production becomes allowed), and the publish gate would rightly refuse them.
 */
export function withoutTests(files: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(files).filter(([name]) => !name.endsWith("_test.rego")));
}

/** The reference policies, plus a computation of ten million numbers for the resource "slow" (or for every resource). */
export function careless(files: Record<string, string>, when = 'input.request.resource == "slow"'): Record<string, string> {
  const out = withoutTests(files);
  out["claiim/slow.rego"] = `package claiim\n\nslow_count := count([x | some x in numbers.range(1, 10000000)]) if ${when}\n`;
  out["claiim/decision.rego"] = out["claiim/decision.rego"].replace("count(deny) == 0\n", "count(deny) == 0\n\tnot slow_count == -1\n");
  return out;
}
