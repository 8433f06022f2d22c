import { identityServices } from "../support/identity";
import { FakeIdentityStore } from "../support/fakes/identity-store";
import { ALL, fakeChron, TESTER } from "../support/recorder";

describe("fake stores are faithful to transactions", () => {
  test("a change whose effect fails halfway leaves every store as it was, and records nothing", async () => {
    const store = new FakeIdentityStore();
    const chron = fakeChron(store);
    const { identity, directory } = await identityServices(store, chron.record);
    await identity.createOrganization({ slug: "acme", name: "Acme" }, TESTER, ALL);
    const bob = await identity.createHuman({ organization: "acme", name: "Bob", email: "bob@x.example" }, TESTER, ALL);
    for (const name of ["a1", "a2"]) await identity.registerAgent({ organization: "acme", name, description: "", owner: bob.id, skills: [{ name: "deploy", version: "1.0.0" }] }, TESTER, ALL);
    const recorded = chron.store.rows.length;
    // Deactivating Bob saves Bob, then each of his agents: the second agent's save fails.
    const save = store.saveAgent.bind(store);
    let saves = 0;
    store.saveAgent = async (agent) => {
      if (++saves === 2) throw new Error("disk full");
      return save(agent);
    };
    await expect(identity.deactivateHuman(bob.id, "left", TESTER, ALL)).rejects.toThrow("disk full");
    expect(store.humans.find((h) => h.id === bob.id)?.status).toBe("active");
    expect(store.agents.map((a) => a.status)).toEqual(["active", "active"]);
    expect(chron.store.rows).toHaveLength(recorded);
    expect(directory.human(bob.id, ALL).status).toBe("active");
  });
});
