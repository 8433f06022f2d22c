import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import * as tar from "tar";
import { createHash } from "node:crypto";
import { sha256Hex } from "../lib/canonical";

/** Files of an OPA bundle, by path without a leading slash. */
export type BundleFiles = Map<string, Buffer>;

export interface Manifest {
  revision: string;
  roots: string[];
  wasm: { entrypoint: string; module: string }[];
  rego_version?: number;
  metadata?: Record<string, unknown>;
}

const MAX_BUNDLE_FILE_BYTES = 64 * 1024 * 1024;

/** Reads a gzipped tar into memory. Only regular files count; anything else is refused. */
export async function readBundle(archive: Buffer): Promise<BundleFiles> {
  const files: BundleFiles = new Map();
  const failures: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const parser = new tar.Parser({
      strict: true,
      onReadEntry(entry) {
        const name = entry.path.replace(/^\/+/, "");
        if (entry.type === "Directory") return void entry.resume();
        if (entry.type !== "File" || name.split("/").includes("..") || (entry.size ?? 0) > MAX_BUNDLE_FILE_BYTES) {
          failures.push(name);
          return void entry.resume();
        }
        const chunks: Buffer[] = [];
        entry.on("data", (c: Buffer) => chunks.push(c));
        entry.on("end", () => files.set(name, Buffer.concat(chunks)));
      },
    });
    parser.on("error", reject);
    parser.on("end", () => resolve());
    parser.end(archive);
  });
  if (failures.length) throw new Error(`bundle holds entries that are not plain files: ${failures.join(", ")}`);
  return files;
}

/**
 * Writes files as a deterministic gzipped tar (sorted paths, zero times, no owners), with paths
 * rooted at "/" as `opa build` writes them: OPA's loader matches the manifest's wasm module path
 * ("/policy.wasm") against the entry's path as it stands.
 */
export async function writeBundle(files: BundleFiles): Promise<Buffer> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "claiim-bundle-"));
  try {
    const names = [...files.keys()].sort();
    for (const name of names) {
      const target = path.join(dir, name);
      await fs.mkdir(path.dirname(target), { recursive: true });
      await fs.writeFile(target, files.get(name)!);
    }
    const out = path.join(dir, "..", `${path.basename(dir)}.tar.gz`);
    await tar.c({ gzip: true, cwd: dir, file: out, portable: true, mtime: new Date(0), noDirRecurse: true, prefix: "/", preservePaths: true }, names);
    const archive = await fs.readFile(out);
    await fs.rm(out, { force: true });
    return archive;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/**
 * The bundle's content digest: SHA-256 over the sorted list of its files (all but .manifest, which
 * carries the digest, and .signatures.json, which signs it) with the SHA-256 of each. It names what
 * the policy is, whatever the archive's byte layout or the key that signed it.
 */
export function contentDigest(files: BundleFiles): string {
  const h = createHash("sha256");
  for (const name of [...files.keys()].sort()) {
    if (name === ".manifest" || name === ".signatures.json") continue;
    h.update(`${name}\0${sha256Hex(files.get(name)!)}\n`);
  }
  return `sha256:${h.digest("hex")}`;
}

export function revisionOf(version: number, digest: string): string {
  return `${version}-${digest}`;
}

export function parseManifest(files: BundleFiles): Manifest {
  const raw = files.get(".manifest");
  if (!raw) throw new Error("bundle has no .manifest");
  return JSON.parse(raw.toString("utf8")) as Manifest;
}

export function fileSha256(archive: Buffer): string {
  return `sha256:${sha256Hex(archive)}`;
}
