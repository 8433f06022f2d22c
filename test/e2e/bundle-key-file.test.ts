import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { loadConfig } from "../../src/config";
import { startTestServer } from "../support/claiim";
import { databaseKinds } from "../support/databases";
import { sql } from "../support/sql";

function keyFile(name: string): string {
  const file = path.join(process.env.CLAIIM_TEST_TMP!, `${name}-${process.pid}-${Date.now()}.pem`);
  fs.writeFileSync(file, generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "pkcs8" }));
  return file;
}

describe.each(databaseKinds())("a bundle-signing key kept outside the database, on %s", (kind) => {
  test("it signs every version, the database holds no bundle key, and a key change needs the old key trusted", async () => {
    const first = keyFile("bundle-key-1");
    const s = await startTestServer(kind, { env: { CLAIIM_BUNDLE_SIGNING_KEY_FILE: first } });
    const admin = () => ({ Authorization: `Bearer ${s.admin}` });
    try {
      const [key] = (await s.http.get("/v1/policies/signing-keys").set(admin()).expect(200)).body.keys;
      expect((await s.http.get("/v1/policies/status").set(admin())).body).toMatchObject({ active_version: 1, active_signed_by: key.kid });
      expect(await sql(s.claiim.db, "SELECT kid FROM signing_keys WHERE purpose = 'bundle-signing'")).toEqual([]);
      expect((await s.http.post("/v1/policies/signing-keys/rotate").set(admin()).send({}).expect(409)).body.code).toBe("bundle_signing_key_external");

      // A new key file without the old key trusted: the active version no longer verifies; nothing runs unverified.
      const second = keyFile("bundle-key-2");
      s.config.bundleSigning = loadConfig({ CLAIIM_BUNDLE_SIGNING_KEY_FILE: second }).bundleSigning;
      await s.restart();
      await s.http.get("/readyz").expect(503);
      expect((await s.http.get("/v1/policies/status").set(admin())).body.errors[0].message).toMatch(/signed by unknown key/);

      // Trusting the old public key (a JWKS file) brings it back, and new versions are signed by the new key.
      const trusted = path.join(path.dirname(second), `trusted-${Date.now()}.json`);
      fs.writeFileSync(trusted, JSON.stringify({ keys: [key.jwk] }));
      s.config.bundleSigning = loadConfig({ CLAIIM_BUNDLE_SIGNING_KEY_FILE: second, CLAIIM_BUNDLE_TRUSTED_KEYS_FILE: trusted }).bundleSigning;
      await s.restart();
      await s.http.get("/readyz").expect(200);
      const files = (await s.http.get("/v1/policies/1").set(admin())).body.files;
      await s.http.post("/v1/policies").set(admin()).send({ files, message: "under the new key", activate: true }).expect(201);
      const status = (await s.http.get("/v1/policies/status").set(admin())).body;
      expect(status.active_signed_by).not.toBe(key.kid);
      expect((await s.http.get("/v1/policies/signing-keys").set(admin())).body.keys.map((k: { kid: string; current: boolean }) => [k.kid === key.kid, k.current])).toEqual([[false, true], [true, false]]);
    } finally {
      await s.stop();
    }
  });
});

test("a bundle-signing key file that is not an EC P-256 private key stops CLAIIM from starting, with the reason", () => {
  const dir = process.env.CLAIIM_TEST_TMP!;
  const rsa = path.join(dir, `rsa-${process.pid}.pem`);
  fs.writeFileSync(rsa, generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "pem", type: "pkcs8" }));
  const garbage = path.join(dir, `garbage-${process.pid}.pem`);
  fs.writeFileSync(garbage, "not a key");
  expect(() => loadConfig({ CLAIIM_BUNDLE_SIGNING_KEY_FILE: rsa })).toThrow(/must hold an EC P-256 key/);
  expect(() => loadConfig({ CLAIIM_BUNDLE_SIGNING_KEY_FILE: garbage })).toThrow(/does not hold a PEM private key/);
  expect(() => loadConfig({ CLAIIM_BUNDLE_TRUSTED_KEYS_FILE: garbage })).toThrow(/needs CLAIIM_BUNDLE_SIGNING_KEY_FILE/);
  const ec = keyFile("ec");
  expect(() => loadConfig({ CLAIIM_BUNDLE_SIGNING_KEY_FILE: ec, CLAIIM_BUNDLE_TRUSTED_KEYS_FILE: garbage })).toThrow(/must be a JWKS/);
});
