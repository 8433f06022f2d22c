import fs from "node:fs";
import path from "node:path";
import express, { type RequestHandler } from "express";
import type { OidcSettings } from "../identity/oidc";
import { NotFoundError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import type { ConsoleSettings } from "./console-settings";
import { OidcDiscovery, type ConsoleOidcConfig } from "./oidc-discovery";

export const CONSOLE_PATH = "/console";

/**
 * The Content-Security-Policy of every console response. WARNING: the console runs no inline
 * script or style and reaches nothing but CLAIIM itself and, when OIDC is configured, the
 * identity provider's token endpoint; keep it that way rather than loosening this.
 */
export function contentSecurityPolicy(connect: string[]): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    `connect-src ${["'self'", ...connect].join(" ")}`,
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

function secure(res: express.Response, connect: string[] = []): void {
  res.set({
    "Content-Security-Policy": contentSecurityPolicy(connect),
    "X-Content-Type-Options": "nosniff",
    // The OIDC callback's URL carries the authorization code until the console replaces it.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
  });
}

/**
 * Serves the web console's built files at /console: hashed assets cached for good, index.html
 * for every other path without a file extension (the console routes in the browser), and
 * /console/config.json, which tells the console how to sign humans in. The console itself uses
 * the public API only.
 */
export function consoleHandler(settings: ConsoleSettings, oidc: OidcSettings | null, logger: Logger): RequestHandler {
  const discovery = settings.oidc && oidc ? new OidcDiscovery(oidc.issuer, oidc.jwksCooldownSeconds, oidc.jwksCacheSeconds, logger) : null;
  const indexFile = path.join(settings.dir, "index.html");
  const router = express.Router({ strict: true });
  const oidcConfig = async (): Promise<{ config: ConsoleOidcConfig | null; error?: string }> => {
    if (!discovery || !settings.oidc) return { config: null };
    const found = await discovery.get();
    if ("error" in found) return { config: null, error: found.error };
    const { clientId, scope, resource, token } = settings.oidc;
    return { config: { ...found.metadata, client_id: clientId, scope, resource, token } };
  };
  const connectTo = (config: ConsoleOidcConfig | null) => (config ? [new URL(config.token_endpoint).origin] : []);

  router.get("/config.json", async (_req, res) => {
    const { config, error } = await oidcConfig();
    secure(res, connectTo(config));
    res.set("Cache-Control", "no-store").json({ oidc: config, ...(error ? { oidc_error: error } : {}) });
  });
  router.use(
    express.static(settings.dir, {
      index: false,
      redirect: false,
      dotfiles: "deny",
      fallthrough: true,
      setHeaders: (res, file) => {
        secure(res as express.Response);
        const hashed = path.relative(settings.dir, file).startsWith(`assets${path.sep}`);
        res.setHeader("Cache-Control", hashed ? "public, max-age=31536000, immutable" : "no-cache");
      },
    }),
  );
  router.use(async (req, res, next) => {
    if (req.method !== "GET" && req.method !== "HEAD") return next();
    // A missing file (a name with an extension) is a 404, not the page: a stale asset must not load as HTML.
    if (/\.[A-Za-z0-9]+$/.test(req.path)) return next();
    let html: string;
    try {
      html = await fs.promises.readFile(indexFile, "utf8");
    } catch {
      return next(new NotFoundError("console_not_built", `the console is not built here (no ${indexFile}): run make setup`));
    }
    const { config } = await oidcConfig();
    secure(res, connectTo(config));
    res.set("Cache-Control", "no-store").type("html").send(html);
  });
  const app = express.Router({ strict: true });
  app.get(CONSOLE_PATH, (_req, res) => res.redirect(308, `${CONSOLE_PATH}/`));
  app.use(CONSOLE_PATH, router);
  return app;
}
