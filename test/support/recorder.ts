import { ChronWriter } from "../../src/chron/chron-writer";
import { FakeChronStore } from "./fakes/chron-store";
import type { Transactional } from "./fakes/transactional";
import type { Recorder } from "../../src/chron/chron-store";
import type { EventContent } from "../../src/chron/record";
import { createLogger } from "../../src/lib/logger";
import type { Actor } from "../../src/shared/principal";

export const TESTER: Actor = { type: "api_key", id: "k-test", name: "tester" };
export const ALL = { orgId: null };

/**
 * A real Chron writer on an in-memory store, for services that record their changes; the fake
 * stores given take part in its transactions (a failed change leaves them as they were).
 */
export function fakeChron(...joined: Transactional[]) {
  const store = new FakeChronStore().joins(...joined);
  const writer = new ChronWriter(store, 100, createLogger("silent"));
  const record: Recorder = (contents, effect) => writer.commit(contents, effect);
  const events = () => store.rows.map((r) => JSON.parse(r.content)).filter((c) => c.kind === "event") as EventContent[];
  return { store, writer, record, events };
}
