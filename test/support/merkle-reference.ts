import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const ROOT = path.resolve(__dirname, "../..");
const SOURCE = path.join(ROOT, "test/reference/merkle");
const BINARY = path.join(ROOT, ".tools/bin/merkle-reference");

export interface ReferenceRequest {
  leaves: string[];
  roots?: number[];
  inclusion?: [number, number][];
  consistency?: [number, number][];
  check_inclusion?: { index: number; size: number; leaf: string; proof: string[]; root: string }[];
  check_consistency?: { size1: number; size2: number; proof: string[]; root1: string; root2: string }[];
}

export interface ReferenceResponse {
  roots: string[];
  inclusion: string[][];
  consistency: string[][];
  check_inclusion: boolean[];
  check_consistency: boolean[];
}

/**
 * github.com/transparency-dev/merkle (the RFC 6962/9162 implementation behind Certificate
 * Transparency and Sigstore), through the small Go program in test/reference/merkle, built with the
 * Go toolchain that builds the OPA CLI. Rebuilt when its source is newer than the binary.
 */
export function buildReference(): void {
  const newest = Math.max(...["main.go", "go.mod", "go.sum"].map((f) => fs.statSync(path.join(SOURCE, f)).mtimeMs));
  if (fs.existsSync(BINARY) && fs.statSync(BINARY).mtimeMs >= newest) return;
  fs.mkdirSync(path.dirname(BINARY), { recursive: true });
  execFileSync("go", ["build", "-o", BINARY, "."], { cwd: SOURCE, env: { ...process.env, GOFLAGS: "-mod=mod" }, stdio: "pipe" });
}

export function reference(request: ReferenceRequest): ReferenceResponse {
  const out = execFileSync(BINARY, [], { input: JSON.stringify(request), maxBuffer: 512 * 1024 * 1024 });
  return JSON.parse(out.toString("utf8")) as ReferenceResponse;
}
