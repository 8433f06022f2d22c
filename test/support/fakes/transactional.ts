/**
 * What a fake store needs to take part in a transaction: a copy of its state, and a way back to
 * it. FakeChronStore takes a snapshot of every participant before an append with an effect, and
 * restores them all if the effect or the append fails, as a database rolls back: a fake-backed
 * test sees no partial write, as a real one would not.
 */
export interface Transactional {
  snapshot(): unknown;
  restore(state: unknown): void;
}

/** Snapshot and restore of an object's own data fields, by structured clone (Maps, Dates and Buffers included). */
/**
 * A deep copy that keeps Buffers Buffers (structuredClone would make them plain Uint8Arrays).
 * Types are told by their tag, not instanceof: under jest, values may come from another realm.
 */
function clone(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return Buffer.from(v);
  const tag = Object.prototype.toString.call(v);
  if (tag === "[object Date]") return new Date((v as Date).getTime());
  if (tag === "[object Map]") return new Map([...(v as Map<unknown, unknown>)].map(([k, x]) => [k, clone(x)]));
  if (Array.isArray(v)) return v.map(clone);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, clone(x)]));
  return v;
}

/** Snapshot and restore of an object's own data fields. */
export function fieldsOf<T extends object>(store: T, fields: (keyof T)[]): Transactional {
  return {
    snapshot: () => fields.map((f) => clone(store[f])),
    restore: (state) => fields.forEach((f, i) => (store[f] = (state as unknown[])[i] as T[keyof T])),
  };
}
