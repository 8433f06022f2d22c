// The replay store on each real database: what one process saves, another reads, in order; a save
// carried again after a commit its caller did not see replaces its records; pruning takes a replay's
// records with it (the foreign key's ON DELETE CASCADE, which SQLite honours only with foreign_keys on).
import fs from "node:fs";
import path from "node:path";
import { openDatabase, type Database } from "../../src/db/database";
import type { ReplayView } from "../../src/policy/replay";
import { noneFound, prismaReplayStore, type FoundChange } from "../../src/policy/replay-store";
import { databaseKinds, freshDatabase, type TestDatabase } from "../support/databases";
import { sql } from "../support/sql";

function view(id: string, orgId: string | null, startedMs: number, state: ReplayView["state"] = "running"): ReplayView {
  return {
    id,
    version: 2,
    revision: "2-sha256:x",
    from: new Date(0).toISOString(),
    to: new Date(startedMs).toISOString(),
    organization_id: orgId,
    requested_by: "tester",
    state,
    started_at: new Date(startedMs).toISOString(),
    finished_at: null,
    error: null,
    ...noneFound(10),
  };
}

function change(n: number, direction: FoundChange["direction"]): FoundChange {
  return {
    n,
    direction,
    record: {
      seq: 100 + n,
      decision_id: `d-${n}`,
      timestamp: new Date(n).toISOString(),
      organization: { id: "o-1", slug: "o-1" },
      agent: { id: "a-1", name: "bot" },
      action: "deploy",
      resource: `r-${n}`,
      recorded: { decision: "allow", reasons: [], policy_version: 1 },
      replayed: { decision: "deny", reasons: [`reason ${n} ✓ \u{1F600}`] },
      redacted: false,
    } as unknown as FoundChange["record"],
  };
}

describe.each(databaseKinds())("the replay store on %s", (kind) => {
  let testDb: TestDatabase;
  let one: Database;
  let two: Database;

  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "replay-store-"));
    testDb = await freshDatabase(kind, dir);
    [one, two] = [await openDatabase(kind, testDb.url), await openDatabase(kind, testDb.url)];
  });
  afterAll(async () => {
    await one?.close();
    await two?.close();
    await testDb?.drop();
  });

  test("what one connection saves the other reads: counts as last saved, records in the order found, carried saves replacing their own", async () => {
    const [writer, reader] = [prismaReplayStore(one.prisma, kind), prismaReplayStore(two.prisma, kind)];
    const v = view("r-1", "o-1", 1000);
    const before = Date.now();
    await writer.save(v, []);
    const first = (await reader.get("r-1"))!;
    expect(first.view).toEqual(v);
    expect(first.updatedMs).toBeGreaterThanOrEqual(before - 1000);
    expect(first.updatedMs).toBeLessThanOrEqual(Date.now() + 1000);
    v.progress.processed = 3;
    v.allow_to_deny.count = 2;
    v.deny_to_allow.count = 1;
    await writer.save(v, [change(0, "allow_to_deny"), change(1, "deny_to_allow"), change(2, "allow_to_deny")]);
    // A connection lost at COMMIT: the caller carries 1 and 2 again, with 3.
    v.allow_to_deny.count = 3;
    await writer.save(v, [change(1, "deny_to_allow"), change(2, "allow_to_deny"), change(3, "allow_to_deny")]);
    const got = (await reader.get("r-1"))!;
    expect(got.updatedMs).toBeGreaterThanOrEqual(first.updatedMs);
    expect(got.view.allow_to_deny.records.map((r) => r.seq)).toEqual([100, 102, 103]);
    expect(got.view.deny_to_allow.records).toEqual([change(1, "deny_to_allow").record]);
    expect(got.view.progress.processed).toBe(3);
    expect(await sql(one, "SELECT CAST(COUNT(*) AS INTEGER) AS n FROM policy_replay_changes")).toEqual([{ n: 4 }]);
    expect(await reader.get("nobody")).toBeNull();
  });

  test("listed newest first, per organisation; pruning keeps the newest that ended, and takes their records with them", async () => {
    const store = prismaReplayStore(one.prisma, kind);
    await store.save(view("r-2", "o-2", 2000, "done"), [change(0, "allow_to_deny")]);
    await store.save(view("r-3", "o-1", 3000, "failed"), []);
    await store.save(view("r-4", null, 4000), []);
    // r-1 runs, but its process last saved it two minutes ago.
    await sql(one, "UPDATE policy_replays SET updated_ms = updated_ms - 120000 WHERE id = 'r-1'");
    expect((await store.list(null, 10)).map((s) => s.view.id)).toEqual(["r-4", "r-3", "r-2", "r-1"]);
    expect((await store.list("o-1", 10)).map((s) => s.view.id)).toEqual(["r-3", "r-1"]);
    expect((await store.list(null, 2)).map((s) => s.view.id)).toEqual(["r-4", "r-3"]);
    expect((await store.get("r-1"))!.ageMs).toBeGreaterThanOrEqual(120_000);
    // Not saved for a minute, r-1 counts as ended; r-4 does not.
    expect(await store.prune(1, 60_000)).toBe(2);
    expect((await store.list(null, 10)).map((s) => s.view.id)).toEqual(["r-4", "r-3"]);
    expect(await sql(one, "SELECT CAST(COUNT(*) AS INTEGER) AS n FROM policy_replay_changes")).toEqual([{ n: 0 }]);
  });

  test("a row edited by hand never fails a read: a summary that cannot be read is a failed replay that says so, a record that cannot be read is left out and said", async () => {
    const store = prismaReplayStore(one.prisma, kind);
    await store.save(view("r-5", "o-1", 5000, "done"), [change(0, "allow_to_deny"), change(1, "allow_to_deny")]);
    await store.save(view("r-6", "o-1", 6000, "done"), []);
    await sql(one, "UPDATE policy_replay_changes SET record = '{not json' WHERE replay_id = 'r-5' AND n = 1");
    await sql(one, "UPDATE policy_replays SET summary = '[1, 2' WHERE id = 'r-6'");
    const five = (await store.get("r-5"))!.view;
    expect(five.allow_to_deny.records.map((r) => r.seq)).toEqual([100]);
    expect(five.error).toMatch(/1 of its records as saved in the database could not be read/);
    expect((await store.get("r-6"))!.view).toMatchObject({ id: "r-6", organization_id: "o-1", state: "failed", error: expect.stringMatching(/could not be read; run it again/) });
    await sql(one, "UPDATE policy_replays SET summary = $1 WHERE id = 'r-6'", [JSON.stringify({ ...view("r-7", "o-1", 6000, "done") })]);
    expect((await store.get("r-6"))!.view).toMatchObject({ id: "r-6", state: "failed" });
    // A summary moved to another organisation by hand is not shown as that organisation's.
    await sql(one, "UPDATE policy_replays SET summary = $1 WHERE id = 'r-6'", [JSON.stringify({ ...view("r-6", "o-2", 6000, "done") })]);
    expect((await store.get("r-6"))!.view).toMatchObject({ id: "r-6", organization_id: "o-1", state: "failed" });
    expect((await store.list("o-1", 10)).map((s) => s.view.id)).toEqual(["r-6", "r-5", "r-3"]);
  });

  // Last: its pruning would take the ended replays the tests above rely on.
  test("saves are stamped, ages read and staleness pruned on the database's clock: a process whose machine's clock is minutes off changes none of them", async () => {
    const store = prismaReplayStore(one.prisma, kind);
    for (const skewMs of [10 * 60_000, -10 * 60_000]) {
      const real = Date.now();
      const skewed = jest.spyOn(Date, "now").mockImplementation(() => real + skewMs);
      try {
        await store.save(view("r-skew", "o-1", 7000), []);
        const got = (await store.get("r-skew"))!;
        expect(Math.abs(got.updatedMs - real)).toBeLessThan(5000);
        expect(got.ageMs).toBeGreaterThanOrEqual(0);
        expect(got.ageMs).toBeLessThan(5000);
        // Running and saved a moment ago by the database's clock: not stale, whatever this process's clock says.
        await store.prune(0, 60_000);
        expect(await store.get("r-skew")).not.toBeNull();
      } finally {
        skewed.mockRestore();
      }
    }
  });
});
