import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import ts from "typescript";
import { nodeEnv } from "../support/process";

const ROOT = path.resolve(__dirname, "../..");
// The smallest module: one function type, one function that does nothing.
const MODULE = "new Uint8Array([0,97,115,109,1,0,0,0,1,4,1,96,0,0,3,2,1,0,10,4,1,2,0,11])";

/**
 * Compiles in a process with nothing else to do, eagerly, as CLAIIM's start-up compiles OPA's
 * builtin module before it listens. On Node.js 24 a bare WebAssembly.compile lets such a process
 * exit 0 with the promise pending (make test-lts runs this on 24). The source is transpiled here
 * rather than loaded through tsx, whose esbuild child would itself hold the process open.
 */
async function compileAlone(body: string): Promise<string> {
  const js = ts.transpileModule(fs.readFileSync(path.join(ROOT, "src/policy/runtime/compile.ts"), "utf8"), { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText;
  const script = `const exports = {}; ${js};\n${body}.then((m) => console.log(m instanceof WebAssembly.Module ? "compiled" : "not a module"));`;
  const { stdout } = await promisify(execFile)(process.execPath, ["--no-wasm-lazy-compilation", "-e", script], { cwd: ROOT, env: { ...nodeEnv(), PATH: process.env.PATH } });
  return stdout.trim();
}

test("compileHeld keeps a process with nothing else to do alive until the module is compiled", async () => {
  expect(await compileAlone(`exports.compileHeld(${MODULE})`)).toBe("compiled");
});
