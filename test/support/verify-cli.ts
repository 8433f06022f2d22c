import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
export const VERIFY = path.resolve(__dirname, "../../bin/claiim-verify");

/** Runs the offline verifier as an auditor would; its exit code and what it printed. */
export async function claiimVerify(file: string, jwks: string, witness?: string): Promise<{ code: number; out: string }> {
  try {
    const { stdout } = await run(process.execPath, [VERIFY, file, "--jwks", jwks, ...(witness ? ["--witness", witness] : [])]);
    return { code: 0, out: stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}
