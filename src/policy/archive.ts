import { createGunzip } from "node:zlib";
import * as tar from "tar";
import { InputError, PayloadTooLargeError } from "../lib/errors";
import type { PolicySources } from "./compiler";

export interface ArchiveLimits {
  /** Most bytes once decompressed: a small upload that inflates past this is a size bomb. */
  maxBytes: number;
  maxEntries: number;
}

/**
 * Reads a policy set from a gzipped tar, refusing what a hostile archive would slip in: paths
 * that climb out (`..`) or start at the root, links and devices, more entries or more
 * decompressed bytes than allowed. Directories are passed over; every file must be UTF-8 text.
 */
export function readPolicyArchive(archive: Buffer, limits: ArchiveLimits): Promise<PolicySources> {
  return new Promise((resolve, reject) => {
    const sources: PolicySources = {};
    let inflated = 0;
    let entries = 0;
    const seen = new Set<string>();
    let failed = false;
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      gunzip.destroy();
      reject(err);
    };
    const gunzip = createGunzip();
    const parser = new tar.Parser({
      strict: true,
      onReadEntry(entry) {
        entries += 1;
        const name = entry.path;
        if (entries > limits.maxEntries) return fail(new PayloadTooLargeError("archive_too_large", `the archive holds more than ${limits.maxEntries} entries`));
        if (name.startsWith("/") || name.split("/").includes("..")) {
          return fail(new InputError("archive_path_invalid", `archive entry ${name} climbs out of the policy set`, [{ path: name, message: "absolute or '..' path" }]));
        }
        if (entry.type === "Directory") return void entry.resume();
        if (entry.type !== "File" && entry.type !== "OldFile") {
          return fail(new InputError("archive_entry_refused", `archive entry ${name} is a ${entry.type}, not a plain file`, [{ path: name, message: `${entry.type} refused` }]));
        }
        const file = name.replace(/^\.\//, "");
        // Two entries of one name: whichever won, the set would not be what its author saw.
        if (Object.hasOwn(sources, file) || seen.has(file)) {
          return fail(new InputError("archive_entry_duplicate", `archive entry ${name} appears twice`, [{ path: name, message: "duplicate entry" }]));
        }
        seen.add(file);
        const chunks: Buffer[] = [];
        entry.on("data", (c: Buffer) => chunks.push(c));
        entry.on("end", () => {
          const text = Buffer.concat(chunks);
          const decoded = new TextDecoder("utf-8", { fatal: true });
          try {
            const decodedText = decoded.decode(text);
            if (decodedText.includes("\u0000")) throw new Error("NUL");
            sources[file] = decodedText;
          } catch {
            fail(new InputError("archive_entry_refused", `archive entry ${name} is not UTF-8 text without NUL`, [{ path: name, message: "not text" }]));
          }
        });
      },
    });
    gunzip.on("data", (chunk: Buffer) => {
      inflated += chunk.length;
      if (inflated > limits.maxBytes) fail(new PayloadTooLargeError("archive_too_large", `the archive decompresses to more than ${limits.maxBytes} bytes`));
    });
    gunzip.on("error", () => fail(new InputError("archive_invalid", "the upload is not a gzipped tar archive")));
    parser.on("error", (err: Error) => fail(new InputError("archive_invalid", `the archive is not a valid tar: ${err.message}`)));
    parser.on("end", () => {
      if (!failed) resolve(sources);
    });
    gunzip.pipe(parser);
    gunzip.end(archive);
  });
}
