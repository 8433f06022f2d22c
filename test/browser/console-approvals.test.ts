/// <reference lib="dom" />
// Functions passed to page.evaluate run in the browser: the DOM types are for them.
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { Browser } from "playwright-core";
import { startTestServer, type TestServer } from "../support/claiim";
import { seedConsole, type Seeded } from "../support/console-seed";
import { check, closeChecked, freePort, go, launchChromium, oidcEnv, openPage, region, signIn, signInWithProvider, startOidcProvider, type Watched } from "../support/browser";
import { WebhookReceiver } from "../support/webhook-receiver";

// The console's Approvals page in Chromium against a real CLAIIM on SQLite, seeded as for the
// other console tests (deploy-bot's production deploy waits for Alice, support-bot's customer
// response for Gus), with the approval webhook going to a real receiver on loopback. The humans
// answer in the browser; the agents then ask again over HTTP, and Chron says what happened.

jest.setTimeout(120_000);

type Rec = { seq: number; kind: string; type?: string; decision?: string; reason?: string; reason_codes?: string[]; actor?: { name: string }; subject?: { id: string }; approval?: { id: string; approved_by?: { human: { email: string } | null } }; after?: Record<string, unknown> };
type ApprovalView = { id: string; status: string; organization: string; agent: { id: string; name: string }; decision_id: string; request: { action: string; resource: string }; webhook: { state: string } };

describe("the Approvals page in Chromium", () => {
  let s: TestServer;
  let seeded: Seeded;
  let browser: Browser;
  const receiver = new WebhookReceiver();
  const open: Watched[] = [];
  const as = () => ({ Authorization: `Bearer ${s.admin}` });

  const watch = async (origin = s.claiim.url) => {
    const w = await openPage(browser, origin);
    open.push(w);
    return w;
  };
  const approvals = async (q = ""): Promise<ApprovalView[]> => (await s.http.get(`/v1/approvals?status=pending&${q}`).set(as()).expect(200)).body.approvals;
  const records = async (q: string): Promise<Rec[]> => (await s.http.get(`/v1/chron/records?limit=1000&${q}`).set(as()).expect(200)).body.records;
  /** An agent of the seed asks, over HTTP, as the agent itself. */
  const ask = async (agent: string, action: string, resource: string, approvalId?: string) => {
    const a = seeded.agents[agent];
    const body = { action, resource, purpose: "console seed", skill: a.skill, ...(approvalId ? { approval_id: approvalId } : {}) };
    return (await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${a.token}` }).send(body).expect(200)).body as { decision: string; reason_codes: string[]; approval?: { id: string } };
  };
  const rows = async (w: Watched) => (await region(w.page, "Requests")).locator("tbody tr");
  /** Waits until CLAIIM has recorded how its notification of an approval ended (the receiver answered before CLAIIM recorded it). */
  const notified = async (id: string) => {
    const deadline = Date.now() + 15_000;
    while ((await s.http.get(`/v1/approvals/${id}`).set(as()).expect(200)).body.webhook.state === "pending") {
      if (Date.now() > deadline) throw new Error(`approval ${id}: its webhook is still pending`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  beforeAll(async () => {
    await receiver.start();
    // The first approval's notification is delivered; the second's fails twice, and so has failed.
    receiver.plan = [204, 500, 500];
    s = await startTestServer("sqlite", {
      env: {
        CLAIIM_APPROVAL_WEBHOOK_URL: receiver.url,
        CLAIIM_APPROVAL_WEBHOOK_SECRET: `whsec_${randomBytes(32).toString("base64")}`,
        CLAIIM_APPROVAL_WEBHOOK_RETRY_SECONDS: "0.2",
        CLAIIM_APPROVAL_WEBHOOK_TIMEOUT_SECONDS: "2",
      },
    });
    seeded = await seedConsole(s.claiim.url, s.admin);
    await receiver.count(3);
    for (const a of await approvals()) await notified(a.id);
    browser = await launchChromium();
  });
  afterEach(() => closeChecked(open));
  afterAll(async () => {
    await browser?.close();
    await s?.stop();
    await receiver.stop();
  });

  test("an approver key approves, relaying the accountable human's answer with a reason; the agent's next identical request is allowed once, and Chron has every step", async () => {
    const [pending] = await approvals(`agent=${seeded.agents["deploy-bot"].id}`);
    const w = await watch();
    await signIn(w, seeded.keys.acmeApprover);
    // An approver sees Approvals only, and lands there; its key is confined to acme.
    await expect(w.page.getByRole("navigation", { name: "Console" }).getByRole("link").allTextContents()).resolves.toEqual(["Approvals"]);
    await expect(w.page.locator("header .who").textContent()).resolves.toMatch(/acme change bridge · approver · organisation acme/);
    await w.page.waitForURL(/\/console\/approvals/);
    const list = await rows(w);
    await expect(list.allTextContents()).resolves.toEqual([
      expect.stringMatching(/^deploy production“console seed”, deploy@1\.2\.0.*pending.*acme.*deploy-bot.*alice@acme\.example.*Alice Ops <alice@acme\.example> \(accountable human\)/),
    ]);
    // An approver key reads approvals, not the inventory: no organisation or agent filter to fail.
    await expect(w.page.getByLabel("Organisation").count()).resolves.toBe(0);
    await expect(w.page.getByRole("combobox", { name: "Agent" }).count()).resolves.toBe(0);
    await check(w.page, "20-approvals-as-approver");

    await list.first().getByRole("link", { name: "deploy production" }).click();
    await w.page.getByRole("heading", { level: 1, name: /^deploy production/ }).waitFor();
    expect(w.page.url()).toBe(`${s.claiim.url}/console/approvals/${pending.id}`);
    const request = await region(w.page, "The request");
    await expect(request.textContent()).resolves.toMatch(/Agentdeploy-bot.*Accountable humanAlice Ops <alice@acme\.example>.*Actiondeploy.*Resourceproduction.*Purposeconsole seed.*Skilldeploy 1\.2\.0.*deploying to production requires a change approved by a human/);
    await expect(w.page.getByTestId("webhook-state").textContent()).resolves.toBe("delivered after 1 attempt");
    // Chron is for auditors: the approver sees the decisions by id.
    await expect((await region(w.page, "In Chron")).textContent()).resolves.toContain(pending.decision_id);
    // The policy names the accountable human: this key relays her answer, and says so.
    const answer = await region(w.page, "Your answer");
    await expect(answer.getByLabel("On behalf of").locator("option").allTextContents()).resolves.toEqual(["alice@acme.example"]);
    await expect(answer.getByRole("button", { name: "Approve" }).isDisabled()).resolves.toBe(true);
    await answer.getByRole("textbox", { name: "Reason" }).fill("CHG-1042: Alice approved in #deploys");
    // Enter in the reason answers nothing: only the buttons do.
    await answer.getByRole("textbox", { name: "Reason" }).press("Enter");
    await check(w.page, "21-approval-pending", "docs/images/console-approval.png");
    expect((await approvals(`agent=${seeded.agents["deploy-bot"].id}`)).map((a) => a.id)).toEqual([pending.id]);
    await answer.getByRole("button", { name: "Approve" }).click();
    await expect(w.page.getByTestId("answered").textContent()).resolves.toBe("Approved: deploy-bot may now deploy production once, before the approval expires.");
    await w.page.getByTestId("approval-status").getByText("approved").waitFor();
    await expect((await region(w.page, "Status")).textContent()).resolves.toMatch(/by Alice Ops <alice@acme\.example>, through acme change bridge: “CHG-1042: Alice approved in #deploys”/);
    await expect(w.page.getByRole("region", { name: "Your answer" }).count()).resolves.toBe(0);
    await check(w.page, "22-approval-approved");
    // Nothing waits any more.
    await go(w.page, "/approvals");
    await w.page.getByText("No approval matches: nothing waits.").waitFor();

    // The agent asks again with the approval: allowed, once; the same request again is denied.
    const used = await ask("deploy-bot", "deploy", "production", pending.id);
    expect([used.decision, used.reason_codes]).toEqual(["allow", ["approval_granted"]]);
    const again = await ask("deploy-bot", "deploy", "production", pending.id);
    expect([again.decision, again.reason_codes]).toEqual(["deny", ["approval_used"]]);
    const trail = await records(`agent=${seeded.agents["deploy-bot"].id}`);
    const approved = trail.filter((r) => r.type === "approval.approved");
    expect(approved).toEqual([expect.objectContaining({ subject: expect.objectContaining({ id: pending.id }), reason: "CHG-1042: Alice approved in #deploys", actor: expect.objectContaining({ name: "acme change bridge" }) })]);
    const allow = trail.filter((r) => r.approval?.id === pending.id && r.decision === "allow");
    expect(allow).toEqual([expect.objectContaining({ reason_codes: ["approval_granted"], approval: expect.objectContaining({ approved_by: expect.objectContaining({ human: expect.objectContaining({ email: "alice@acme.example" }) }) }) })]);

    // An auditor reads the approval's whole story from Chron, each step linked to its record.
    const auditor = await watch();
    await signIn(auditor, seeded.keys.auditor);
    await go(auditor.page, `/approvals/${pending.id}`);
    await auditor.page.getByTestId("approval-status").getByText("used").waitFor();
    const steps = (await region(auditor.page, "In Chron")).locator("tbody tr");
    // Step, decision and reason code of each record that names the approval, in chain order.
    const story = (await steps.evaluateAll((trs) => trs.map((tr) => Array.from(tr.querySelectorAll("td")).slice(2).map((td) => td.querySelector("code")?.textContent ?? td.textContent)))) as string[][];
    expect(story.filter(([, decision]) => decision !== "event")).toEqual([
      ["asked for it", "approval required", "approval_required"],
      ["asked again, answered with it", "approval required", "approval_required"],
      ["asked again, answered with it", "approval required", "approval_required"],
      ["used it", "allow", "approval_granted"],
      ["refused the use of it", "deny", "approval_used"],
    ]);
    expect(story.filter(([, decision]) => decision === "event").map(([type]) => type).sort()).toEqual(["approval.approved", "approval.requested", "approval.used", "approval.webhook_delivered"]);
    await expect(auditor.page.getByRole("button", { name: /Approve|Reject/ }).count()).resolves.toBe(0);
    await check(auditor.page, "23-approval-used-as-auditor");
    // From the step to its record, and from the record back to the approval.
    await steps.filter({ hasText: "used it" }).getByRole("link").click();
    await auditor.page.getByRole("heading", { name: /^Record #\d+$/ }).waitFor();
    await expect(auditor.page.getByRole("region", { name: "Decision" }).textContent()).resolves.toMatch(/approval_granted approval .* given by alice@acme\.example \(through acme change bridge\), allows exactly this request once/);
    await auditor.page.getByRole("link", { name: pending.id }).click();
    await auditor.page.getByTestId("approval-status").getByText("used").waitFor();
  });

  test("a rejection: the globex key rejects for Gus, and the agent's request with that approval is denied; the key sees nothing of acme", async () => {
    // A fresh acme approval, pending: another organisation's key must not see it.
    const asked = await ask("deploy-bot", "deploy", "production/api");
    expect(asked.decision).toBe("approval_required");
    const acme = asked.approval!.id;
    const [support] = await approvals(`agent=${seeded.agents["support-bot"].id}`);

    const w = await watch();
    await signIn(w, seeded.keys.globexApprover);
    await go(w.page, "/approvals?status=any&approver=any");
    const list = await rows(w);
    await expect(list.count()).resolves.toBe(1);
    await expect(list.first().textContent()).resolves.toMatch(/^send_response ticket\/17.*pending.*globex.*support-bot/);
    // Acme's approval, by its address: it does not exist for this key.
    await go(w.page, `/approvals/${acme}`);
    await expect(w.page.getByRole("alert").textContent()).resolves.toMatch(/approval_not_found/);
    await check(w.page, "24-approval-other-organisation");

    await go(w.page, `/approvals/${support.id}`);
    const answer = await region(w.page, "Your answer");
    // Its notification never reached anyone: that shows, with the receiver's answer.
    await expect(w.page.getByTestId("webhook-state").textContent()).resolves.toBe("failed after 2 attempts");
    await expect((await region(w.page, "Notification")).textContent()).resolves.toMatch(/Last error.*500/);
    await expect(answer.getByLabel("On behalf of").inputValue()).resolves.toBe("gus@globex.example");
    await answer.getByRole("textbox", { name: "Reason" }).fill("the customer asked for a refund, not this reply");
    await answer.getByRole("button", { name: "Reject" }).click();
    await expect(w.page.getByTestId("answered").textContent()).resolves.toBe("Rejected: support-bot is denied if it asks with this approval.");
    await w.page.getByTestId("approval-status").getByText("rejected").waitFor();
    await check(w.page, "25-approval-rejected");

    const denied = await ask("support-bot", "send_response", "ticket/17", support.id);
    expect([denied.decision, denied.reason_codes]).toEqual(["deny", ["approval_rejected"]]);
    expect((await records(`agent=${seeded.agents["support-bot"].id}&action=approval.rejected`)).map((r) => [r.reason, r.actor?.name])).toEqual([
      ["the customer asked for a refund, not this reply", "globex support bridge"],
    ]);
    // Acme's approval is untouched, still waiting for Alice.
    expect((await s.http.get(`/v1/approvals/${acme}`).set(as()).expect(200)).body.status).toBe("pending");
  });

  test("an auditor sees every organisation's approvals, with filters, and no approve or reject button; an agent manager sees them too", async () => {
    const asked = await ask("deploy-bot", "deploy", "production/web");
    const id = asked.approval!.id;
    await notified(id);
    const w = await watch();
    await signIn(w, seeded.keys.auditor);
    // From the dashboard's count of approvals to the list.
    await expect(w.page.getByTestId("approvals-requested").textContent()).resolves.toBe(String((await records("action=approval.requested")).length));
    await w.page.getByRole("link", { name: "Pending approvals" }).click();
    const list = await rows(w);
    // Pending, newest first, across organisations (the auditor is confined to none).
    const pending = await approvals();
    await expect(list.count()).resolves.toBe(pending.length);
    await expect(list.first().textContent()).resolves.toMatch(/^deploy production\/web/);
    await expect(w.page.getByLabel("Organisation").locator("option").allTextContents()).resolves.toEqual(["all", "Acme Corp (acme)", "Globex (globex)"]);
    await check(w.page, "26-approvals-as-auditor");
    // A filter: one agent's, in any status, through the agent's name in the list.
    await list.first().getByRole("link", { name: "deploy-bot" }).click();
    await w.page.waitForURL(new RegExp(`agent=${seeded.agents["deploy-bot"].id}`));
    await expect((await rows(w)).allTextContents()).resolves.toEqual((await approvals(`agent=${seeded.agents["deploy-bot"].id}`)).map((a) => expect.stringMatching(new RegExp(`^${a.request.action} ${a.request.resource}`))));

    await go(w.page, `/approvals/${id}`);
    await region(w.page, "In Chron");
    await expect(w.page.getByRole("region", { name: "Your answer" }).count()).resolves.toBe(0);
    await expect(w.page.getByRole("button", { name: /Approve|Reject/ }).count()).resolves.toBe(0);
    await expect((await region(w.page, "In Chron")).locator("tbody tr").allTextContents()).resolves.toEqual([
      expect.stringMatching(/asked for itapproval requiredapproval_required deploying to production requires a change approved by a human/),
      expect.stringMatching(/approval\.requested/),
      expect.stringMatching(/approval\.webhook_delivered/),
    ]);
    await check(w.page, "27-approval-as-auditor");

    const manager = await watch();
    await signIn(manager, seeded.keys.manager);
    await go(manager.page, `/approvals/${id}`);
    await manager.page.getByRole("heading", { level: 1, name: /^deploy production\/web/ }).waitFor();
    await expect(manager.page.getByRole("button", { name: /Approve|Reject/ }).count()).resolves.toBe(0);
    await expect((await region(manager.page, "In Chron")).textContent()).resolves.toMatch(/Reading Chron needs the auditor role/);
    // The agent's own page says what it waits for.
    await manager.page.getByRole("link", { name: "deploy-bot" }).click();
    await expect((await region(manager.page, "Open approvals")).getByRole("link", { name: "deploy production/web" }).count()).resolves.toBe(1);
    await check(manager.page, "28-agent-open-approvals");
  });

  test("what the agent wrote is shown to the approver as text: markup in its purpose neither runs nor loads anything", async () => {
    const markup = '<img src="https://attacker.example/x.png" onerror="window.__pwned = 1"><script>window.__pwned = 2</script>';
    const a = seeded.agents["deploy-bot"];
    const body = { action: "deploy", resource: "production/db", purpose: markup, skill: a.skill };
    const asked = (await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${a.token}` }).send(body).expect(200)).body;
    expect(asked.decision).toBe("approval_required");
    const w = await watch();
    await signIn(w, seeded.keys.acmeApprover);
    await (await rows(w)).getByText(markup).waitFor();
    await go(w.page, `/approvals/${asked.approval.id}`);
    await (await region(w.page, "The request")).getByText(markup).waitFor();
    expect(await w.page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    await expect(w.page.locator("main img").count()).resolves.toBe(0);
  });

  describe("with the organisation's identity provider", () => {
    let idp: ChildProcess;
    let oidc: TestServer;
    let issuer: string;
    let token: string;

    beforeAll(async () => {
      issuer = `http://127.0.0.1:${await freePort()}`;
      oidc = await startTestServer("sqlite", { env: oidcEnv(issuer) });
      const admin = { Authorization: `Bearer ${oidc.admin}` };
      await oidc.http.post("/v1/organizations").set(admin).send({ slug: "acme", name: "Acme" }).expect(201);
      await oidc.http.post("/v1/humans").set(admin).send({ organization: "acme", name: "Olga Ops", email: "olga@acme.example" }).expect(201);
      const agent = (await oidc.http.post("/v1/agents").set(admin).send({ organization: "acme", name: "deploy-bot", owner: "olga@acme.example", skills: [{ name: "deploy", version: "1.2.0" }] }).expect(201)).body.id;
      token = (await oidc.http.post(`/v1/agents/${agent}/credentials`).set(admin).send({}).expect(201)).body.token;
      idp = await startOidcProvider(Number(new URL(issuer).port), `${oidc.claiim.url}/console/callback`, "urn:claiim:api");
    });
    afterAll(async () => {
      idp?.kill();
      await oidc?.stop();
    });

    test("the accountable human, signed in with no CLAIIM role, finds what waits for her and approves it herself; the agent is then allowed", async () => {
      const request = { action: "deploy", resource: "production", purpose: "release 1.4.0", skill: { name: "deploy", version: "1.2.0" } };
      const decide = async (body: object) => (await oidc.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(body).expect(200)).body;
      const asked = await decide(request);
      expect(asked.decision).toBe("approval_required");

      const w = await watch(oidc.claiim.url);
      await signInWithProvider(w, issuer, "olga", "/", /\/console\/approvals$/);
      await expect(w.page.locator("header .who").textContent()).resolves.toMatch(/Olga Ops · no role · organisation acme/);
      await expect(w.page.getByRole("navigation", { name: "Console" }).getByRole("link").allTextContents()).resolves.toEqual(["Approvals"]);
      // She starts on those that wait for her (approver=me).
      await expect(w.page.getByLabel("Who may answer").inputValue()).resolves.toBe("me");
      const list = await rows(w);
      await expect(list.count()).resolves.toBe(1);
      await check(w.page, "29-approvals-as-accountable-human");
      await list.first().getByRole("link", { name: "deploy production" }).click();
      const answer = await region(w.page, "Your answer");
      // She answers as herself: nobody to relay for.
      await expect(answer.getByLabel("On behalf of").count()).resolves.toBe(0);
      await answer.getByRole("textbox", { name: "Reason" }).fill("release 1.4.0 passed staging");
      await answer.getByRole("button", { name: "Approve" }).click();
      await w.page.getByTestId("approval-status").getByText("approved").waitFor();
      await expect((await region(w.page, "Status")).textContent()).resolves.toMatch(/by Olga Ops <olga@acme\.example>: “release 1\.4\.0 passed staging”/);
      await check(w.page, "30-approved-by-accountable-human");

      const used = await decide({ ...request, approval_id: asked.approval.id });
      expect([used.decision, used.reason_codes]).toEqual(["allow", ["approval_granted"]]);
      const [event] = (await oidc.http.get("/v1/chron/records?action=approval.approved").set({ Authorization: `Bearer ${oidc.admin}` }).expect(200)).body.records;
      expect(event).toMatchObject({ actor: { type: "human", name: "Olga Ops" }, reason: "release 1.4.0 passed staging", after: { approved_by: { human: { email: "olga@acme.example" } } } });
      // The provider was reached, and nothing else outside CLAIIM.
      expect(w.requests.filter((u) => !u.startsWith(`${oidc.claiim.url}/`)).every((u) => u.startsWith(`${issuer}/`))).toBe(true);
      w.requests.length = 0;
    });
  });
});
