/*
 * The Chron reads the web console makes, timed on the benchmark's full Chron (make bench): each is
 * one page (50 records, as the explorer asks; 1000 for an approval's steps) or one summary, served
 * by the database, never the whole trail. Run from chron-export.ts once its Chron is filled.
 */
import type { ChronFilter } from "../src/chron/chron-store";
import type { ChronService } from "../src/chron/chron-service";

const PAGE = 50;
const RUNS = 5;

async function time(work: () => Promise<unknown>): Promise<number> {
  await work(); // warm the page cache once, as a console user clicking twice would
  const ms: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = process.hrtime.bigint();
    await work();
    ms.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return ms.sort((a, b) => a - b)[Math.floor(RUNS / 2)];
}

export async function measureConsoleQueries(chron: ChronService, records: number, span: { fromMs: number; toMs: number }): Promise<void> {
  const newest = (filter: ChronFilter) => () => chron.list(filter, undefined, PAGE, "desc");
  const secondPage = async () => {
    const first = await chron.list({}, undefined, PAGE, "desc");
    return chron.list({}, first.next_cursor!, PAGE, "desc");
  };
  const hour = { fromMs: span.toMs - 3_600_000, toMs: span.toMs };
  const reads: [string, () => Promise<unknown>][] = [
    ["explorer, newest first, no filter", newest({})],
    ["explorer, the next page by cursor", secondPage],
    ["explorer, denials", newest({ decision: "deny" })],
    ["explorer, one agent's denials", newest({ agentId: "agent-7", decision: "deny" })],
    ["explorer, one agent, oldest first", () => chron.list({ agentId: "agent-7" }, undefined, PAGE, "asc")],
    ["explorer, the last hour", newest(hour)],
    ["explorer, an event type no record has (policy.activated)", newest({ kind: "event", action: "policy.activated" })],
    ["record page: one record by seq", newest({ fromSeq: Math.floor(records / 2), toSeq: Math.floor(records / 2) })],
    ["dashboard: latest denials", () => chron.list({ kind: "decision", decision: "deny" }, undefined, 10, "desc")],
    ["dashboard: summary of the whole window", () => chron.summary({ fromMs: span.fromMs, toMs: span.toMs + 1 }, { agent: () => null, human: () => null })],
    // An approval's page reads its agent's records over the approval's life (1000 at most) and keeps those naming it.
    ["approval page: an agent's records since an open approval asked an hour ago", () => chron.list({ agentId: "agent-7", fromMs: hour.fromMs }, undefined, 1000, "asc")],
    [
      "approval page: an agent's records over a closed approval's life (mid-chain)",
      () => chron.list({ agentId: "agent-7", fromMs: (span.fromMs + span.toMs) / 2, toMs: (span.fromMs + span.toMs) / 2 + 3_900_000 }, undefined, 1000, "asc"),
    ],
  ];
  console.log(`console   the console's reads on ${records.toLocaleString("en")} records (median of ${RUNS}, page cache warm):`);
  for (const [what, work] of reads) console.log(`          ${(await time(work)).toFixed(1).padStart(8)} ms  ${what}`);
}
