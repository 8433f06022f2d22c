import { loadConfig } from "../../src/config";

describe("configuration from the environment", () => {
  test("defaults when nothing is set, empty counts as unset", () => {
    const c = loadConfig({ CLAIIM_CHRON_MAX_BATCH: "" }, "/srv/claiim");
    expect(c).toMatchObject({ port: 8080, host: "127.0.0.1", databaseKind: "sqlite", dataDir: "/srv/claiim/data", logLevel: "info", chron: { maxBatch: 256 }, keyOverlapSeconds: 30 * 24 * 3600 });
    expect(c.publicUrl).toBe("http://127.0.0.1:8080");
  });

  test("evaluation threads: 2 in a process alone, 1 in each of several workers, or as set", () => {
    expect(loadConfig({ CLAIIM_WORKERS: "1" }, "/").evaluation.workers).toBe(2);
    expect(loadConfig({ CLAIIM_WORKERS: "2" }, "/").evaluation.workers).toBe(1);
    expect(loadConfig({ CLAIIM_WORKERS: "4", CLAIIM_EVAL_WORKERS: "3" }, "/").evaluation.workers).toBe(3);
    expect(loadConfig({ CLAIIM_WORKERS: "1", CLAIIM_EVAL_WORKERS: "1" }, "/").evaluation.workers).toBe(1);
    expect(() => loadConfig({ CLAIIM_EVAL_WORKERS: "0" }, "/")).toThrow(/CLAIIM_EVAL_WORKERS/);
  });

  test("every wrong variable is named at once, with what it must be", () => {
    expect(() => loadConfig({ PORT: "99999", CLAIIM_CHRON_MAX_BATCH: "lots", CLAIIM_ACCESS_TOKEN_TTL_SECONDS: "0", LOG_LEVEL: "loud" }, "/")).toThrow(
      /PORT must be a port number.*CLAIIM_ACCESS_TOKEN_TTL_SECONDS must be a whole number, at least 1.*LOG_LEVEL.*CLAIIM_CHRON_MAX_BATCH must be a whole number/s,
    );
  });

  test("OIDC needs its audience and keys", () => {
    expect(() => loadConfig({ CLAIIM_OIDC_ISSUER: "https://idp.example" }, "/")).toThrow(/CLAIIM_OIDC_AUDIENCE and CLAIIM_OIDC_JWKS_URL are required/);
    expect(loadConfig({ CLAIIM_OIDC_ISSUER: "https://idp.example", CLAIIM_OIDC_AUDIENCE: "claiim", CLAIIM_OIDC_JWKS_URL: "https://idp.example/jwks", CLAIIM_OIDC_JWKS_COOLDOWN_SECONDS: "0" }, "/").oidc).toMatchObject({ jwksCooldownSeconds: 0 });
  });
});
