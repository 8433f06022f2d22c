// The documentation against the code it describes, so that neither drifts: every problem code in
// docs/api.md with its status (src/lib/problems.ts), every environment variable the code reads in
// docs/configuration.md, and every relative link and #anchor of README.md and docs/*.md resolving.
import fs from "node:fs";
import path from "node:path";
import { PROBLEMS } from "../../src/lib/problems";

const ROOT = path.resolve(__dirname, "../..");
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), "utf8");
/** README.md and every page of docs/, relative to the project folder. */
const PAGES = ["README.md", ...fs.readdirSync(path.join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];

/** A Markdown text without its fenced code blocks (links and headings inside them are code). */
function prose(text: string): string {
  return text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[ \t]*$/gm, "");
}

/** The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
export function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of prose(text).matchAll(/^#{1,6}[ \t]+(.+?)[ \t]*#*$/gm)) {
    const base = m[1]
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
      .replace(/<[^>]+>/g, "")
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
      .replace(/ /g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

describe("docs/api.md", () => {
  test("lists every problem code with its one status, and no code the code does not have", () => {
    const rows = new Map<string, number>();
    for (const m of read("docs/api.md").matchAll(/^\| (\d{3}) [^|]+\| (.+) \|$/gm)) for (const c of m[2].matchAll(/`([a-z_]+)`/g)) rows.set(c[1], Number(m[1]));
    for (const [code, status] of Object.entries(PROBLEMS)) expect([code, rows.get(code)]).toEqual([code, status]);
    expect([...rows.keys()].filter((c) => !(c in PROBLEMS))).toEqual([]);
  });
});

describe("docs/configuration.md", () => {
  /** Every source file of CLAIIM and its commands. */
  const sources = (dir: string): string[] =>
    fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(`${dir}/${e.name}`) : e.name.endsWith(".ts") ? [`${dir}/${e.name}`] : []));
  /**
   * The variables the code reads: every CLAIIM_… and OTEL_… name in src/ (read directly or declared
   * in a zod schema for parseEnv), and the other names declared in those schemas (PORT, HOST, …).
   */
  function variablesRead(): Set<string> {
    const names = new Set<string>();
    for (const file of sources("src")) {
      const text = read(file);
      for (const m of text.matchAll(/\b((?:CLAIIM|OTEL)_[A-Z0-9_]*[A-Z0-9])\b/g)) names.add(m[1]);
      // The keys of an environment schema (an object of zod types given to parseEnv), and env.NAME reads.
      if (/\bparseEnv\(/.test(text)) for (const m of text.matchAll(/^\s+([A-Z][A-Z0-9_]*[A-Z0-9]):\s/gm)) names.add(m[1]);
      for (const m of text.matchAll(/\benv\.([A-Z][A-Z0-9_]*[A-Z0-9])\b/g)) names.add(m[1]);
    }
    return names;
  }
  /** The variables named in the first column of the page's tables. */
  function variablesDocumented(): Set<string> {
    const names = new Set<string>();
    for (const m of read("docs/configuration.md").matchAll(/^\| ([^|]+) \|/gm)) for (const v of m[1].matchAll(/`([A-Z][A-Z0-9_]*[A-Z0-9])(?:=[^`]*)?`/g)) names.add(v[1]);
    return names;
  }

  test("the way variables are found still finds the schema's (a check that cannot pass on nothing)", () => {
    const found = variablesRead();
    for (const name of ["PORT", "HOST", "DATABASE_URL", "OPA_BIN", "LOG_LEVEL", "CLAIIM_DATA_DIR", "CLAIIM_APPROVAL_MAX_TTL_SECONDS", "OTEL_SERVICE_NAME", "CLAIIM_URL"]) expect(found).toContain(name);
    expect(found.size).toBeGreaterThan(70);
  });

  test("documents every variable CLAIIM and its commands read", () => {
    const documented = variablesDocumented();
    expect([...variablesRead()].filter((v) => !documented.has(v)).sort()).toEqual([]);
  });

  test("documents no variable that nothing reads (the tools' own are read by scripts/, test/ or bench/)", () => {
    const found = variablesRead();
    const tools = [textUnder("scripts"), textUnder("test"), textUnder("bench"), read("Makefile")].join("\n");
    expect([...variablesDocumented()].filter((v) => !found.has(v) && !new RegExp(`\\b${v}\\b`).test(tools)).sort()).toEqual([]);
  });

  /** Every source file under a folder, concatenated (for a word search). */
  function textUnder(dir: string): string {
    const out: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(path.join(ROOT, d), { withFileTypes: true })) {
        if (e.isDirectory()) walk(`${d}/${e.name}`);
        else if (/\.(ts|js|mjs|cjs|sh|py)$/.test(e.name)) out.push(read(`${d}/${e.name}`));
      }
    };
    walk(dir);
    return out.join("\n");
  }
});

describe("links", () => {
  const targets = PAGES.flatMap((page) =>
    [...prose(read(page)).matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => ({ page, target: m[1] })).filter(({ target }) => !/^[a-z][a-z0-9+.-]*:/i.test(target)),
  );

  test("there are relative links to check", () => {
    expect(targets.length).toBeGreaterThan(30);
    expect(targets.some((t) => t.target.includes("#"))).toBe(true);
  });

  test.each(PAGES)("every relative link and #anchor of %s resolves", (page) => {
    const broken: string[] = [];
    for (const { target } of targets.filter((t) => t.page === page)) {
      const [file, anchor] = target.split("#", 2) as [string, string | undefined];
      const resolved = file === "" ? page : path.normalize(path.join(path.dirname(page), decodeURIComponent(file)));
      if (resolved.startsWith("..") || !fs.existsSync(path.join(ROOT, resolved))) {
        broken.push(`${target}: no ${resolved}`);
        continue;
      }
      if (anchor !== undefined && !anchors(read(resolved)).has(anchor)) broken.push(`${target}: ${resolved} has no heading #${anchor}`);
    }
    expect(broken).toEqual([]);
  });

  test("anchors are made as GitHub makes them", () => {
    expect([...anchors("# `claiim`, the operator's command\n## Node.js versions\n## Policy evaluation: bounds and builtins\n## A\n## A\n```\n# not a heading\n```\n")]).toEqual([
      "claiim-the-operators-command",
      "nodejs-versions",
      "policy-evaluation-bounds-and-builtins",
      "a",
      "a-1",
    ]);
  });
});
