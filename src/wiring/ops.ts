// Operating CLAIIM in the object graph: what the metrics read, the rate limits (their refusals
// counted), traces, and Chron's part of readiness.
import type { Config } from "../config";
import type { ChronWriter } from "../chron/chron-writer";
import type { Checkpointer } from "../chron/checkpoints";
import type { EvaluationPool } from "../policy/evaluation/pool";
import { Metrics } from "../ops/metrics";
import { RateLimits } from "../ops/rate-limits";
import { Tracing } from "../ops/tracing";
import { chronHealth } from "../ops/health";

export function opsPart(config: Config, deps: { writer: ChronWriter; checkpointer: Checkpointer; pool: EvaluationPool }, version: string) {
  const { writer, checkpointer, pool } = deps;
  const metrics = new Metrics({
    chron: () => {
      const cp = checkpointer.health();
      return { queued: writer.health().queued, unsignedRecords: cp.unsigned, checkpointLagSeconds: cp.lagSeconds };
    },
    evaluation: () => pool.stats(),
  });
  // Only this process's own commits: records another process committed are counted there.
  writer.onCommit((rows, seconds) => seconds !== null && metrics.committed(rows, seconds));
  writer.onFailure((seconds) => metrics.commitFailed(seconds));
  pool.onOutcome((o) => metrics.evaluated(o));
  const limits = new RateLimits(config.ops.rateLimits, (limit) => metrics.limited(limit));
  const tracing = new Tracing(config.ops.tracing, version);
  const health = () => chronHealth(writer.health(), checkpointer.health(), { stuckSeconds: config.ops.chronStuckSeconds, checkpointEverySeconds: config.chron.checkpointEverySeconds });
  return { metrics, limits, tracing, health };
}
