import request from "supertest";
import { createApp } from "../../src/http/app";
import { route, type Mounting } from "../../src/http/route";
import { AuthenticationError, ConflictError, NotFoundError } from "../../src/lib/errors";
import { createLogger } from "../../src/lib/logger";

// A miss ("not known here") is answered only after the process caught up with what other
// processes committed: once, and the work runs again only when there was something new.
describe("a miss catches up once with the other processes", () => {
  function harness(newElsewhere: boolean) {
    let known = false;
    const runs = { handler: 0, catchUps: 0, conflicts: 0 };
    const mounting: Mounting = {
      authenticate: (h) => {
        if (h !== "Bearer staff" && !(known && h === "Bearer new-key")) throw new AuthenticationError("api_key_invalid", "no such key");
        return { kind: "api_key", id: "k", name: "staff", role: "admin", orgId: null };
      },
      defaultBodyLimit: 1024,
      catchUp: async () => {
        runs.catchUps += 1;
        if (newElsewhere) known = true;
        return newElsewhere;
      },
    };
    const routes = [
      route({
        method: "get",
        path: "/things/thing-1",
        summary: "a thing another process made",
        tags: [],
        access: { roles: [] },
        responses: { 200: { description: "found" } },
        handle: () => {
          runs.handler += 1;
          if (!known) throw new NotFoundError("agent_not_found", "no such thing here");
          return { status: 200, body: { ok: true } };
        },
      }),
      route({
        method: "get",
        path: "/conflict",
        summary: "not a miss",
        tags: [],
        access: { roles: [] },
        responses: { 409: { description: "conflict" } },
        handle: () => {
          runs.conflicts += 1;
          throw new ConflictError("agent_exists", "exists");
        },
      }),
    ];
    const app = createApp(routes, mounting, createLogger("silent"));
    return { http: request(app), runs };
  }

  test("made by another process a moment ago: found after one catch-up, and the handler runs twice", async () => {
    const h = harness(true);
    await h.http.get("/things/thing-1").set("Authorization", "Bearer staff").expect(200);
    expect(h.runs).toEqual({ handler: 2, catchUps: 1, conflicts: 0 });
    // Known from now on: no more catching up.
    await h.http.get("/things/thing-1").set("Authorization", "Bearer staff").expect(200);
    expect(h.runs.catchUps).toBe(1);
  });

  test("a credential made elsewhere authenticates after the catch-up", async () => {
    const h = harness(true);
    await h.http.get("/things/thing-1").set("Authorization", "Bearer new-key").expect(200);
    expect(h.runs.catchUps).toBe(1);
  });

  test("nothing new elsewhere: the miss is answered at once, without running the handler again", async () => {
    const h = harness(false);
    expect((await h.http.get("/things/thing-1").set("Authorization", "Bearer staff").expect(404)).body.code).toBe("agent_not_found");
    expect(h.runs).toEqual({ handler: 1, catchUps: 1, conflicts: 0 });
  });

  test("other refusals never catch up", async () => {
    const h = harness(true);
    await h.http.get("/conflict").set("Authorization", "Bearer staff").expect(409);
    expect(h.runs).toEqual({ handler: 0, catchUps: 0, conflicts: 1 });
  });
});
