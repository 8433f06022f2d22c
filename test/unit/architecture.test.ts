import fs from "node:fs";
import path from "node:path";
import madge from "madge";

/**
 * The pillars depend one way, lowest first: a module may import from its own folder and from the
 * folders before it, never after. Shared vocabulary and infrastructure at the bottom; the
 * composition root (config.ts, wiring/ with one builder per pillar, core.ts, server.ts, cluster/: worker mode, main.ts) at the top, with the command line (cli/: its
 * `admin recover` opens the database as the server does).
 */
const LAYERS = ["lib", "shared", "ops", "http", "db", "keys", "chron", "identity", "policy", "approvals", "decisions", "console", "mcp", "types", "config.ts", "wiring", "core.ts", "server.ts", "cluster", "cli", "main.ts"];

describe("architecture", () => {
  let graph: Record<string, string[]>;
  let cycles: string[][];

  beforeAll(async () => {
    const root = path.resolve(__dirname, "../../src");
    const result = await madge(root, { fileExtensions: ["ts"], tsConfig: path.resolve(__dirname, "../../tsconfig.json"), excludeRegExp: [/^generated\//] });
    graph = result.obj();
    // Within src/ only: packages it uses (the SDK's declarations) are theirs to arrange.
    cycles = result.circular().filter((cycle) => cycle.some((file) => !file.startsWith("..")));
  }, 120_000);

  test("no module imports itself back through others", () => {
    expect(cycles).toEqual([]);
  });

  test("every folder of src/ has its place in the layers", () => {
    const folders = new Set(Object.keys(graph).filter((f) => !f.startsWith("..")).map((f) => f.split("/")[0]));
    expect([...folders].filter((f) => !LAYERS.includes(f))).toEqual([]);
  });

  test("pillars depend one way: never on a pillar above them", () => {
    const rank = (file: string) => LAYERS.indexOf(file.split("/")[0]);
    const upward = Object.entries(graph).flatMap(([from, deps]) =>
      deps.filter((to) => !to.startsWith("..") && rank(to) > rank(from)).map((to) => `${from} -> ${to}`),
    );
    expect(upward).toEqual([]);
  });

  test("no handler asserts its caller exists: the route's access types the principal it is given", () => {
    const asserted = Object.keys(graph)
      .filter((f) => !f.startsWith(".."))
      .filter((f) => /\bprincipal!/.test(fs.readFileSync(path.resolve(__dirname, "../../src", f), "utf8")));
    expect(asserted).toEqual([]);
  });
});
