/**
 * The reference policy set without its tests: the versions these tests publish change what the
 * reference tests assert (production becomes allowed), and the publish gate would rightly refuse them.
 */
export function withoutTests(files: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(files).filter(([name]) => !name.endsWith("_test.rego")));
}
