import fs from "node:fs";
import path from "node:path";
import { PROBLEMS } from "../../src/lib/problems";
import { ConflictError, InputError } from "../../src/lib/errors";

describe("problem codes", () => {
  test("the README's table lists every code with its one status", () => {
    const readme = fs.readFileSync(path.join(__dirname, "../../README.md"), "utf8");
    const rows = new Map<string, number>();
    for (const m of readme.matchAll(/^\| (\d{3}) [^|]+\| (.+) \|$/gm)) for (const c of m[2].matchAll(/`([a-z_]+)`/g)) rows.set(c[1], Number(m[1]));
    for (const [code, status] of Object.entries(PROBLEMS)) expect([code, rows.get(code)]).toEqual([code, status]);
    expect([...rows.keys()].filter((c) => !(c in PROBLEMS))).toEqual([]);
  });

  test("an error's status is its code's", () => {
    expect(new ConflictError("owner_inactive", "x").status).toBe(PROBLEMS.owner_inactive);
    expect(new InputError("range_inverted", "x").status).toBe(PROBLEMS.range_inverted);
  });
});
