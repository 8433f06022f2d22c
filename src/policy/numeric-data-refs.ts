/*
 * OPA reads base documents (the bundle's data) through storage paths, whose segments are strings:
 * `data.errors[404]` finds the key "404" of data.errors. OPA's WebAssembly planner compiles the
 * same reference as a lookup of the number 404, which no JSON object has, so the policy would see
 * nothing where OPA sees the value. Before `opa build -t wasm`, CLAIIM writes such number
 * segments as the strings OPA's storage would use, where the reference leads into an object of
 * the bundle's data and no rule or package shares its path. Nothing else changes: the stored
 * sources, `opa check`, `opa test` and the Rego bundle for sidecars keep the text as written.
 *
 * A number that only a variable holds at evaluation time (`k := 404; data.errors[k]`) is not
 * known here, and is still looked up as a number: see docs/known-limits.md.
 */

interface Location {
  row: number;
  col: number;
  /** The source text of the term, base64. */
  text: string;
}

interface Term {
  type: string;
  value: unknown;
  location?: Location;
}

export interface ModuleAst {
  package: { path: Term[] };
  imports?: { path: Term; alias?: string }[];
  rules?: { head: { ref?: Term[]; name?: string } }[];
}

/** A quick look for what the rewrite can concern: a number in brackets. */
export function mayHaveNumericRefs(text: string): boolean {
  return /\[\s*-?[0-9]/.test(text);
}

function staticPath(terms: Term[]): string[] {
  const path: string[] = [];
  for (const t of terms) {
    if (t.type !== "string") break;
    path.push(t.value as string);
  }
  return path;
}

function isPrefix(a: string[], b: string[]): boolean {
  return a.length <= b.length && a.every((s, i) => b[i] === s);
}

/** Where rules and packages put virtual documents (paths under data). */
function virtualPaths(modules: ModuleAst[]): string[][] {
  const paths: string[][] = [];
  for (const m of modules) {
    const pkg = staticPath(m.package.path.slice(1));
    paths.push(pkg);
    for (const r of m.rules ?? []) {
      const ref = r.head.ref ?? (r.head.name ? [{ type: "var", value: r.head.name }] : []);
      if (ref[0]?.type !== "var") continue;
      paths.push([...pkg, ref[0].value as string, ...staticPath(ref.slice(1))]);
    }
  }
  return paths;
}

function dataAt(data: unknown, path: string[]): unknown {
  let v = data;
  for (const key of path) {
    if (v === null || typeof v !== "object" || Array.isArray(v) || !Object.prototype.hasOwnProperty.call(v, key)) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

function walk(node: unknown, visit: (t: Term) => void): void {
  if (Array.isArray(node)) {
    for (const x of node) walk(x, visit);
  } else if (node && typeof node === "object") {
    const t = node as Term;
    if (typeof t.type === "string" && t.type === "ref") visit(t);
    for (const v of Object.values(node)) walk(v, visit);
  }
}

/**
 * The rewritten text of each module that needs it: number segments of references into objects of
 * the bundle's data become string segments.
 */
export function rewriteNumericDataRefs(texts: Record<string, string>, modules: Record<string, ModuleAst>, data: unknown): Record<string, string> {
  const virtual = virtualPaths(Object.values(modules));
  const rewritten: Record<string, string> = {};
  for (const [file, ast] of Object.entries(modules)) {
    const aliases = new Map<string, string[]>();
    for (const imp of ast.imports ?? []) {
      const ref = imp.path.value as Term[];
      if (imp.path.type !== "ref" || ref[0]?.type !== "var" || ref[0].value !== "data") continue;
      const path = staticPath(ref.slice(1));
      if (path.length !== ref.length - 1) continue;
      aliases.set(imp.alias ?? path[path.length - 1], path);
    }
    const edits: Location[] = [];
    walk(ast.rules ?? [], (ref) => {
      const terms = ref.value as Term[];
      const head = terms[0];
      if (head?.type !== "var") return;
      let path: string[] | undefined = head.value === "data" ? [] : aliases.get(head.value as string);
      if (!path) return;
      path = [...path];
      for (const seg of terms.slice(1)) {
        if (seg.type === "string") {
          path.push(seg.value as string);
          continue;
        }
        if (seg.type !== "number" || !seg.location) return;
        const text = Buffer.from(seg.location.text, "base64").toString("utf8");
        const container = dataAt(data, path);
        path.push(text);
        if (virtual.some((v) => isPrefix(v, path!) || isPrefix(path!, v))) return;
        if (container === null || typeof container !== "object" || Array.isArray(container)) return;
        edits.push(seg.location);
      }
    });
    if (!edits.length) continue;
    const lines = texts[file].split("\n").map((l) => Buffer.from(l, "utf8"));
    // From the last to the first, so that earlier columns stay where they are.
    edits.sort((a, b) => b.row - a.row || b.col - a.col);
    for (const e of edits) {
      const text = Buffer.from(e.text, "base64");
      const line = lines[e.row - 1];
      const at = e.col - 1;
      if (!line || !line.subarray(at, at + text.length).equals(text)) continue;
      lines[e.row - 1] = Buffer.concat([line.subarray(0, at), Buffer.from(JSON.stringify(text.toString("utf8"))), line.subarray(at + text.length)]);
    }
    rewritten[file] = lines.map((l) => l.toString("utf8")).join("\n");
  }
  return rewritten;
}
