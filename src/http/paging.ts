import { z } from "./openapi";
import { InputError } from "../lib/errors";

/**
 * Query fields of a list held in memory (agents, humans) that a client pages through. Without
 * `limit` the whole list comes back, as it did before paging existed.
 */
export const PageQuery = {
  q: z.string().min(1).max(200).optional().openapi({ description: "Case-insensitive text the item's name (or email) contains" }),
  limit: z.coerce.number().int().min(1).max(1000).optional().openapi({ description: "Page size; without it, every match" }),
  cursor: z.string().max(400).optional().openapi({ description: "next_cursor of the previous page" }),
};

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

function decode(cursor: string): string {
  try {
    const after = (JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as { after?: unknown }).after;
    if (typeof after === "string") return after;
  } catch {
    // reported below
  }
  throw new InputError("invalid_cursor", "cursor is not one this server issued", [{ path: "cursor", message: "invalid cursor" }]);
}

/**
 * One page of `items` in the order of `key`, which must be unique per item (end it with the id):
 * the cursor names the last key served, so a page never repeats or skips an item that stayed put,
 * whatever was added or removed meanwhile.
 */
export function pageOf<T>(items: T[], key: (item: T) => string, query: { limit?: number; cursor?: string }): Page<T> {
  const keyed = items.map((item) => ({ item, k: key(item) })).sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
  const after = query.cursor === undefined ? null : decode(query.cursor);
  const rest = after === null ? keyed : keyed.filter((e) => e.k > after);
  if (query.limit === undefined) return { items: rest.map((e) => e.item), next_cursor: null };
  const page = rest.slice(0, query.limit);
  const more = rest.length > query.limit;
  return { items: page.map((e) => e.item), next_cursor: more ? Buffer.from(JSON.stringify({ after: page[page.length - 1].k })).toString("base64url") : null };
}

/** Whether any of the texts contains `q`, ignoring case. */
export function matches(q: string | undefined, ...texts: string[]): boolean {
  if (q === undefined) return true;
  const needle = q.toLowerCase();
  return texts.some((t) => t.toLowerCase().includes(needle));
}
