import { approvalConfig } from "../../src/approvals/config";

const secret = `whsec_${Buffer.alloc(32, 7).toString("base64")}`;

describe("approval configuration", () => {
  test("defaults: an hour to answer, a day at most, no webhook", () => {
    expect(approvalConfig({}, "/")).toEqual({ defaultTtlSeconds: 3600, maxTtlSeconds: 86400, webhook: null });
  });

  test("a webhook needs a Standard Webhooks secret of 24 to 64 bytes, and a http(s) URL", () => {
    const url = "https://bridge.example/hook";
    expect(approvalConfig({ CLAIIM_APPROVAL_WEBHOOK_URL: url, CLAIIM_APPROVAL_WEBHOOK_SECRET: secret }, "/").webhook).toEqual({
      url,
      secret,
      retrySeconds: [5, 30, 120, 600, 1800],
      timeoutMs: 10000,
      concurrency: 4,
    });
    expect(() => approvalConfig({ CLAIIM_APPROVAL_WEBHOOK_URL: url }, "/")).toThrow(/needs CLAIIM_APPROVAL_WEBHOOK_SECRET/);
    expect(() => approvalConfig({ CLAIIM_APPROVAL_WEBHOOK_URL: url, CLAIIM_APPROVAL_WEBHOOK_SECRET: "hunter2" }, "/")).toThrow(/whsec_/);
    expect(() => approvalConfig({ CLAIIM_APPROVAL_WEBHOOK_URL: url, CLAIIM_APPROVAL_WEBHOOK_SECRET: `whsec_${Buffer.alloc(8).toString("base64")}` }, "/")).toThrow(/24 to 64/);
    expect(() => approvalConfig({ CLAIIM_APPROVAL_WEBHOOK_URL: "ftp://x", CLAIIM_APPROVAL_WEBHOOK_SECRET: secret }, "/")).toThrow(/http: or https:/);
    expect(() => approvalConfig({ CLAIIM_APPROVAL_WEBHOOK_URL: "not a url", CLAIIM_APPROVAL_WEBHOOK_SECRET: secret }, "/")).toThrow(/not a URL/);
    expect(() => approvalConfig({ CLAIIM_APPROVAL_WEBHOOK_SECRET: secret }, "/")).toThrow(/URL is not/);
  });

  test("retry waits and limits are checked", () => {
    const base = { CLAIIM_APPROVAL_WEBHOOK_URL: "http://127.0.0.1:1/h", CLAIIM_APPROVAL_WEBHOOK_SECRET: secret };
    expect(approvalConfig({ ...base, CLAIIM_APPROVAL_WEBHOOK_RETRY_SECONDS: "0.5, 2" }, "/").webhook!.retrySeconds).toEqual([0.5, 2]);
    expect(approvalConfig({ ...base, CLAIIM_APPROVAL_WEBHOOK_RETRY_SECONDS: "" }, "/").webhook!.retrySeconds).toEqual([]);
    expect(() => approvalConfig({ ...base, CLAIIM_APPROVAL_WEBHOOK_RETRY_SECONDS: "5,soon" }, "/")).toThrow(/RETRY_SECONDS/);
    expect(() => approvalConfig({ CLAIIM_APPROVAL_DEFAULT_TTL_SECONDS: "7200", CLAIIM_APPROVAL_MAX_TTL_SECONDS: "3600" }, "/")).toThrow(/exceeds/);
    expect(() => approvalConfig({ CLAIIM_APPROVAL_MAX_TTL_SECONDS: "-1" }, "/")).toThrow(/CLAIIM_APPROVAL_MAX_TTL_SECONDS must be a whole number, at least 1/);
  });
});
