import { execFile } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { decodeJwt } from "jose";
import { FakeIdentityStore } from "../support/fakes/identity-store";
import { SigningKeys } from "../../src/keys/signing-keys";
import { readBundle, writeBundle, type BundleFiles } from "../../src/policy/bundle";
import { BundleSigner, opaFileHash } from "../../src/policy/bundle-signing";
import { OpaCliCompiler } from "../../src/policy/opa-compiler";
import { readPolicyDir } from "../../src/policy/policy-views";
import { OPA_BIN } from "../support/fake-core";
import { fakeChron } from "../support/recorder";

const run = promisify(execFile);
const REGO = path.resolve(__dirname, "../../rego");

async function signer(): Promise<BundleSigner> {
  const s = new BundleSigner(new SigningKeys("bundle-signing"), new FakeIdentityStore(), fakeChron().record);
  await s.start();
  return s;
}

/** The reference policies compiled and signed as CLAIIM stores them. */
async function signedBundle(s: BundleSigner): Promise<{ archive: Buffer; files: BundleFiles }> {
  const { files } = await new OpaCliCompiler(OPA_BIN).compile(await readPolicyDir(REGO));
  const signed = await s.sign(files);
  return { archive: await writeBundle(signed), files: signed };
}

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "claiim-signing-"));
}

/** `opa build` on a signed bundle verifies its signature first: the OPA CLI's own check. */
async function opaVerifies(archive: Buffer, publicKeyPem: string): Promise<string | null> {
  const dir = tmp();
  fs.writeFileSync(path.join(dir, "bundle.tar.gz"), archive);
  fs.writeFileSync(path.join(dir, "key.pem"), publicKeyPem);
  try {
    await run(OPA_BIN, ["build", "-b", "bundle.tar.gz", "--verification-key", "key.pem", "--signing-alg", "ES256", "-o", "out.tar.gz"], { cwd: dir });
    return null;
  } catch (err) {
    const { stdout, stderr } = err as { stdout: string; stderr: string };
    return `${stdout}${stderr}`;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe("OPA bundle signatures, checked by the OPA CLI itself", () => {
  test("the OPA CLI verifies CLAIIM's signature on a bundle, and refuses it once a file changed", async () => {
    const s = await signer();
    const { archive, files } = await signedBundle(s);
    const pem = s.list()[0].public_key_pem;
    expect(await opaVerifies(archive, pem)).toBeNull();
    const tampered = new Map(files);
    tampered.set("data.json", Buffer.from(JSON.stringify({ claiim: {} })));
    expect(await opaVerifies(await writeBundle(tampered), pem)).toMatch(/data.json: digest mismatch/);
    const other = await signer();
    expect(await opaVerifies(archive, other.list()[0].public_key_pem)).toMatch(/verif/i);
  });

  test("file hashes agree with `opa sign` on JSON that formatting, key order, number spelling and escapes could split", async () => {
    const files: BundleFiles = new Map([
      [".manifest", Buffer.from('{ "roots": [""], "revision": "r<1>&", "rego_version": 1 }')],
      ["data.json", Buffer.from('{\n  "z": null, "b": 1.0, "a": [1e3, -0, 12345678901234567890, 0.1],\n  "s": "<&> \\u2028 é 𝄞 \\"q\\" \\\\ \\t \\u0001 \\u007f",\n  "é": true, "e": {"y": [], "x": {}}\n}\n')],
      ["x/y/data.json", Buffer.from("[1, 2.50, \"3\"]")],
      ["claiim/policy.rego", Buffer.from("package claiim\n\nx := 1\n")],
    ]);
    const dir = tmp();
    for (const [name, bytes] of files) {
      fs.mkdirSync(path.dirname(path.join(dir, "b", name)), { recursive: true });
      fs.writeFileSync(path.join(dir, "b", name), bytes);
    }
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    fs.writeFileSync(path.join(dir, "key.pem"), privateKey.export({ format: "pem", type: "pkcs8" }));
    fs.mkdirSync(path.join(dir, "out"));
    await run(OPA_BIN, ["sign", "b", "--bundle", "--signing-key", "key.pem", "--signing-alg", "ES256", "-o", "out"], { cwd: dir });
    const jws = JSON.parse(fs.readFileSync(path.join(dir, "out", ".signatures.json"), "utf8")).signatures[0];
    const opaHashes = Object.fromEntries((decodeJwt(jws).files as { name: string; hash: string }[]).map((f) => [f.name.replace(/^b\//, ""), f.hash]));
    fs.rmSync(dir, { recursive: true, force: true });
    expect(Object.fromEntries([...files].map(([name, bytes]) => [name, opaFileHash(name, bytes)]))).toEqual(opaHashes);
  });
});

describe("BundleSigner with a key kept outside the database", () => {
  const pem = () => generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "pkcs8" }) as string;

  test("the key file signs, only it and the trusted keys verify, nothing is stored, and rotation is the operator's", async () => {
    const store = new FakeIdentityStore();
    const first = new BundleSigner(new SigningKeys("bundle-signing"), store, fakeChron().record, { privateKeyPem: pem(), trusted: [] });
    await first.start();
    const { files: signedByFirst } = await signedBundle(first);
    expect(await store.listSigningKeys("bundle-signing")).toEqual([]);
    await expect(first.rotate({ type: "system", id: "t", name: "t" }, null)).rejects.toMatchObject({ status: 409, code: "bundle_signing_key_external" });

    // A key in the database (say, one an intruder stored) is not trusted.
    const inDatabase = await signer();
    const { files: signedInDatabase } = await signedBundle(inDatabase);
    await expect(first.verify(signedInDatabase)).rejects.toThrow(/signed by unknown key/);

    // The next key file, with the first key's public part trusted: old bundles still verify.
    const [old] = first.list();
    const second = new BundleSigner(new SigningKeys("bundle-signing"), store, fakeChron().record, { privateKeyPem: pem(), trusted: [old.jwk] });
    await second.start();
    expect(await second.verify(signedByFirst)).toBe(old.kid);
    expect(second.list().map((k) => [k.kid === old.kid, k.current])).toEqual([[false, true], [true, false]]);
    const untrusting = new BundleSigner(new SigningKeys("bundle-signing"), store, fakeChron().record, { privateKeyPem: pem(), trusted: [] });
    await untrusting.start();
    await expect(untrusting.verify(signedByFirst)).rejects.toThrow(/signed by unknown key/);
  });
});

describe("BundleSigner", () => {
  test("verification names the key that signed, and refuses extra, missing or re-hashed files", async () => {
    const s = await signer();
    const { files } = await signedBundle(s);
    expect(await s.verify(files)).toBe(s.list()[0].kid);
    const extra = new Map(files).set("claiim/extra.rego", Buffer.from("package claiim.extra\n"));
    await expect(s.verify(extra)).rejects.toThrow(/claiim\/extra.rego is not covered by the signature/);
    const missing = new Map(files);
    missing.delete("policy.wasm");
    await expect(s.verify(missing)).rejects.toThrow(/signed file\(s\) missing from the bundle: policy.wasm/);
    const reformatted = new Map(files).set("data.json", Buffer.from(JSON.stringify(JSON.parse(files.get("data.json")!.toString()), null, 2)));
    expect(await s.verify(reformatted)).toBe(s.list()[0].kid);
  });

  test("a signature file that is not one JWS is refused with a reason", async () => {
    const s = await signer();
    const { files } = await signedBundle(s);
    for (const [raw, why] of [
      ["not json", /is not JSON/],
      ['{"signatures":[]}', /exactly one JWS/],
      ['{"signatures":["a.b.c"]}', /JWS header is malformed|unknown key/],
    ] as const) {
      await expect(s.verify(new Map(files).set(".signatures.json", Buffer.from(raw)))).rejects.toThrow(why);
    }
    expect(await readBundle(await writeBundle(files))).toEqual(files);
  });
});
