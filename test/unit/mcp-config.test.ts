import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { globMatch, loadGatewayConfig, resourceOf } from "../../src/mcp/config";

describe("MCP gateway configuration", () => {
  test("globs match as the reference policy's glob.match with / as delimiter", () => {
    expect(globMatch("staging", "staging")).toBe(true);
    expect(globMatch("staging/*", "staging/eu")).toBe(true);
    expect(globMatch("staging/*", "staging/eu/1")).toBe(false);
    expect(globMatch("staging/**", "staging/eu/1")).toBe(true);
    expect(globMatch("*", "production")).toBe(true);
    expect(globMatch("*", "a/b")).toBe(false);
    expect(globMatch("report-?", "report-1")).toBe(true);
    expect(globMatch("{staging,qa}/*", "qa/x")).toBe(true);
    expect(globMatch("{staging,qa}/*", "prod/x")).toBe(false);
    expect(globMatch("a.b", "axb")).toBe(false);
    expect(globMatch("x{", "x{")).toBe(false);
  });

  test("the resource comes from a fixed string, an argument (nested, with a prefix) or the URI, and is null when missing", () => {
    expect(resourceOf("logs", {})).toBe("logs");
    expect(resourceOf({ from: "arguments.environment" }, { arguments: { environment: "staging" } })).toBe("staging");
    expect(resourceOf({ from: "arguments.target.env", prefix: "env/" }, { arguments: { target: { env: "qa" } } })).toBe("env/qa");
    expect(resourceOf({ from: "arguments.n" }, { arguments: { n: 7 } })).toBe("7");
    expect(resourceOf({ from: "uri" }, { uri: "reports://q3" })).toBe("reports://q3");
    for (const args of [{}, { environment: "" }, { environment: ["staging"] }, { environment: { toString: "staging" } }, { environment: null }]) {
      expect(resourceOf({ from: "arguments.environment" }, { arguments: args })).toBeNull();
    }
  });

  test("a bad configuration names the offending field", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gw-config-"));
    const write = (v: unknown) => (fs.writeFileSync(path.join(dir, "c.json"), JSON.stringify(v)), path.join(dir, "c.json"));
    expect(() => loadGatewayConfig(write({ upstreams: {} }))).toThrow(/upstreams/);
    expect(() => loadGatewayConfig(write({ upstreams: { a: { command: "x" } }, tools: { t: { action: "deploy", resource: { from: "body.x" } } } }))).toThrow(/tools\.t\.resource/);
    expect(() => loadGatewayConfig(write({ upstreams: { a: { command: "x" } }, client_secret: "oops" }))).toThrow(/client_secret/);
    expect(loadGatewayConfig(write({ upstreams: { a: { url: "http://127.0.0.1:1/mcp" } } })).config).toMatchObject({ unmapped_resources: "pass", tools: {}, wait_for_approval_seconds: 0 });
    for (const wait of [-1, 1.5, 3601, "30"]) expect(() => loadGatewayConfig(write({ upstreams: { a: { command: "x" } }, wait_for_approval_seconds: wait }))).toThrow(/wait_for_approval_seconds/);
  });
});
