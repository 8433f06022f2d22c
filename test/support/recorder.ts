import { ChronWriter } from "../../src/chron/chron-writer";
import { FakeChronStore } from "../../src/chron/fake-chron-store";
import type { Recorder } from "../../src/chron/chron-store";
import type { Actor, EventContent } from "../../src/chron/record";
import { createLogger } from "../../src/lib/logger";

export const TESTER: Actor = { type: "api_key", id: "k-test", name: "tester" };
export const ALL = { orgId: null };

/** A real Chron writer on an in-memory store, for services that record their changes. */
export function fakeChron() {
  const store = new FakeChronStore();
  const writer = new ChronWriter(store, 100, createLogger("silent"));
  const record: Recorder = (contents, effect) => writer.commit(contents, effect);
  const events = () => store.rows.map((r) => JSON.parse(r.content)).filter((c) => c.kind === "event") as EventContent[];
  return { store, writer, record, events };
}
