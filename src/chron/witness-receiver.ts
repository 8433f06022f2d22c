import fs from "node:fs";
import path from "node:path";
import { z } from "../http/openapi";
import { route, type RouteSpec } from "../http/route";
import { ConflictError, NotFoundError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import { actorOf, rolesOf } from "../shared/principal";
import { verifyConsistency } from "./merkle";
import { WitnessLog, type WitnessedHead } from "./witness";

const HEX64 = z.string().regex(/^[0-9a-f]{64}$/);

const HeadBody = z
  .object({
    chron_witness: z.literal(1),
    tree_size: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    root: HEX64,
    hash: HEX64,
    timestamp: z.string().max(64),
    kid: z.string().max(200),
    jws: z.string().max(4096),
    consistency: z
      .object({ from_size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), from_root: HEX64, proof: z.array(HEX64).max(128) })
      .strict()
      .nullable(),
  })
  .strict()
  .openapi("WitnessedTreeHead", { description: "One signed tree head of another CLAIIM's Chron, as its witness log holds it" });

/**
 * CLAIIM as the witness of other CLAIIMs: each API key with the role `witness` is one log (one
 * CLAIIM that posts its signed tree heads), kept in its own file under CLAIIM_WITNESS_DIR/received.
 * A head is stored only if it extends the last one held, by the RFC 9162 consistency proof it
 * carries; otherwise the answer is 409 with the head held (tree_size, root), from which the sender
 * proves again. So a log that forks or shrinks is refused here, and the file proves by itself that
 * what it holds only grew. Signatures are the auditor's to check, with the origin's JWKS
 * (claiim-verify --witness).
 */
export class ReceivedHeads {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly logger: Logger,
  ) {}

  file(log: string): string {
    return path.join(this.dir, `${log}.log`);
  }

  /** Stores the head if it extends the last one held; serialised, so that two posts cannot both extend the same head. */
  add(log: string, head: WitnessedHead): Promise<{ tree_size: number; root: string }> {
    const next = this.queue.then(() => this.store(log, head));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async store(log: string, head: WitnessedHead): Promise<{ tree_size: number; root: string }> {
    // Opened for each head (a head a second, per log), so that nothing stays open between them.
    const file = new WitnessLog(this.dir, `${log}.log`);
    const opened = await file.open(this.logger);
    try {
      return await this.extend(log, file, opened, head);
    } finally {
      await file.close();
    }
  }

  private async extend(log: string, file: WitnessLog, held: WitnessedHead | null, head: WitnessedHead): Promise<{ tree_size: number; root: string }> {
    const holding = held ? { tree_size: held.tree_size, root: held.root } : null;
    if (held) {
      if (head.tree_size === held.tree_size && head.root === held.root) return holding!;
      const c = head.consistency;
      if (head.tree_size < held.tree_size || !c || c.from_size !== held.tree_size || c.from_root !== held.root) {
        throw new ConflictError("witness_head_not_extending", `this witness holds a tree of ${held.tree_size} records; prove the new head from it`, holding!);
      }
      if (!verifyConsistency(c.from_size, head.tree_size, c.proof, c.from_root, head.root)) {
        this.logger.warn("witness: a head whose consistency proof fails was refused", { log, held: held.tree_size, offered: head.tree_size });
        throw new ConflictError("witness_head_inconsistent", `the consistency proof does not show that the tree of ${head.tree_size} records extends the one of ${held.tree_size} this witness holds: the log forked or was rewritten`, holding!);
      }
    }
    // The first head of a log starts it: it is proven from nothing here.
    const stored: WitnessedHead = held ? head : { ...head, consistency: null };
    await file.append(stored);
    return { tree_size: stored.tree_size, root: stored.root };
  }
}

export function witnessRoutes(received: ReceivedHeads): RouteSpec[] {
  return [
    route({
      method: "post",
      path: "/v1/witness/heads",
      summary: "Witness another CLAIIM's Chron: store its signed tree head if it extends the last one held (RFC 9162 consistency proof)",
      tags: ["witness"],
      access: { roles: ["witness"] },
      body: HeadBody,
      responses: {
        200: { description: "Stored (or already held): the head this witness now holds", schema: z.object({ tree_size: z.number().int(), root: z.string() }) },
        409: { description: "The head does not extend the one held; the problem carries the head held (tree_size, root)" },
      },
      handle: async ({ body, principal }) => ({ status: 200, body: await received.add(actorOf(principal).id, body as WitnessedHead) }),
    }),
    route({
      method: "get",
      path: "/v1/witness/heads",
      summary: "The witness log of one CLAIIM this one witnesses (NDJSON), for claiim-verify --witness",
      tags: ["witness"],
      access: { roles: ["auditor", "witness"] },
      query: z.object({ log: z.string().uuid().optional().openapi({ description: "The id of the witness key that posts that log; a witness key reads its own" }) }).strict(),
      responses: { 200: { description: "One signed tree head per line", contentType: "application/x-ndjson" }, 404: { description: "No such log" } },
      handle: async ({ query, principal }) => {
        const own = actorOf(principal).id;
        const log = rolesOf(principal).includes("witness") ? own : (query.log ?? own);
        const file = received.file(log);
        if (!fs.existsSync(file)) throw new NotFoundError("witness_log_not_found", "this witness holds no heads for that log");
        return { status: 200, contentType: "application/x-ndjson", stream: fs.createReadStream(file, "utf8") as AsyncIterable<string> };
      },
    }),
  ];
}
