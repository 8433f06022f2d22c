import fs from "node:fs";
import path from "node:path";
import type { TestServer } from "./claiim";

/** Downloads GET /v1/chron/export?<query> into `dir/name`, as an auditor would; fails the test unless it is a 200. */
export async function downloadExport(s: TestServer, credential: string, query: string, dir: string, name: string): Promise<string> {
  const res = await s.http
    .get(`/v1/chron/export?${query}`)
    .set({ Authorization: `Bearer ${credential}` })
    .buffer(true)
    .parse((r, cb) => {
      let data = "";
      r.setEncoding("utf8");
      r.on("data", (c: string) => (data += c));
      r.on("end", () => cb(null, data));
    });
  if (res.status !== 200) throw new Error(`export ${query} answered ${res.status}: ${String(res.body).slice(0, 500)}`);
  const file = path.join(dir, name);
  fs.writeFileSync(file, res.body as string);
  return file;
}

/** The server's JWKS, written where claiim-verify can read it. */
export async function saveJwks(s: TestServer, dir: string): Promise<string> {
  const file = path.join(dir, "jwks.json");
  fs.writeFileSync(file, JSON.stringify((await s.http.get("/.well-known/jwks.json").expect(200)).body));
  return file;
}
