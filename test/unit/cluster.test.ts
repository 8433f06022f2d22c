import os from "node:os";
import { createHash } from "node:crypto";
import { loadConfig } from "../../src/config";
import { MerkleFrontier } from "../../src/chron/merkle";
import { decodeStart, encodeStart } from "../../src/cluster/messages";
import { restartDelayMs } from "../../src/cluster/primary";

describe("worker mode", () => {
  test("CLAIIM_WORKERS: one serving process per core unless told; 1 means no cluster; 0 and nonsense are refused", () => {
    expect(loadConfig({}, "/").workers).toBe(os.availableParallelism());
    expect(loadConfig({ CLAIIM_WORKERS: "1" }, "/").workers).toBe(1);
    expect(loadConfig({ CLAIIM_WORKERS: "3" }, "/").workers).toBe(3);
    expect(() => loadConfig({ CLAIIM_WORKERS: "0" }, "/")).toThrow(/CLAIIM_WORKERS must be a whole number, at least 1/);
    expect(() => loadConfig({ CLAIIM_WORKERS: "two" }, "/")).toThrow(/CLAIIM_WORKERS/);
    expect(() => loadConfig({ CLAIIM_WORKERS: "1000" }, "/")).toThrow(/CLAIIM_WORKERS must be a whole number from 1 to 256/);
  });

  test("a worker that keeps dying waits longer each time: at once, then 250 ms doubling, never beyond 30 s", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 9].map(restartDelayMs)).toEqual([0, 250, 500, 1000, 2000, 4000, 8000, 16000, 30000]);
    expect(restartDelayMs(1000)).toBe(30000);
  });

  test("the head and Merkle frontier handed to the first workers come through intact, and a frontier that does not fit its size is refused", () => {
    const frontier = new MerkleFrontier();
    for (let i = 0; i < 13; i++) frontier.append(createHash("sha256").update(String(i)).digest("hex"));
    const start = { head: { seq: 13, hash: "ab".repeat(32) }, frontier };
    const back = decodeStart(encodeStart(start))!;
    expect(back.head).toEqual(start.head);
    expect(back.frontier.root()).toEqual(frontier.root());
    expect(back.frontier.size).toBe(13);
    expect(decodeStart(undefined)).toBeUndefined();
    expect(decodeStart("")).toBeUndefined();
    const text = JSON.parse(encodeStart(start)) as { frontier: string };
    const bad = JSON.stringify({ ...text, frontier: text.frontier.replace('"size":13', '"size":12') });
    expect(() => decodeStart(bad)).toThrow(/does not fit its size/);
  });
});
