// Reads a Prometheus text exposition with the Prometheus project's own parser (the Python client's
// prometheus_client.parser), run in the test venv: it throws on a malformed exposition, and it reads
// labelled histograms, which the npm parsers we tried do not (parse-prometheus-text-format 1.1.1
// merges every labelled histogram into one and drops its _count and _sum).
import { execFileSync } from "node:child_process";
import path from "node:path";

const ROOT = path.resolve(__dirname, "../..");
// scripts/test.sh makes this venv (bash scripts/python-env.sh, test/requirements.txt) and names it here.
const PYTHON = process.env.CLAIIM_TEST_PYTHON ?? path.join(ROOT, ".tools/venv/bin/python");

const PARSE = `
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = {"families": [], "samples": []}
for f in text_string_to_metric_families(sys.stdin.read()):
    out["families"].append({"name": f.name, "type": f.type})
    for s in f.samples:
        v = s.value
        out["samples"].append({"name": s.name, "labels": s.labels, "value": v if math.isfinite(v) else str(v)})
json.dump(out, sys.stdout)
`;

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number | string;
}

export class Exposition {
  constructor(
    /** Metric families by name (a counter's family name has no `_total`), with their type. */
    readonly types: Map<string, string>,
    readonly samples: Sample[],
  ) {}

  /** The samples named so (e.g. `claiim_decisions_total`, `claiim_chron_batch_records_count`) whose labels include `labels`. */
  all(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** The value of the one sample named so with these labels, or 0 when there is none (a labelled counter not yet counted). */
  value(name: string, labels: Record<string, string> = {}): number {
    const found = this.all(name, labels);
    if (found.length > 1) throw new Error(`${found.length} samples ${name} match ${JSON.stringify(labels)}`);
    return found.length ? Number(found[0].value) : 0;
  }
}

/** Parses an exposition; throws when the parser refuses it. */
export function parseExposition(text: string): Exposition {
  const out = JSON.parse(execFileSync(PYTHON, ["-c", PARSE], { input: text, encoding: "utf8", maxBuffer: 64 << 20 })) as {
    families: { name: string; type: string }[];
    samples: Sample[];
  };
  return new Exposition(new Map(out.families.map((f) => [f.name, f.type])), out.samples);
}
