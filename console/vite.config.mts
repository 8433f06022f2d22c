import path from "node:path";
import { defineConfig } from "vite";

// The console is built into dist/console and served by CLAIIM at /console. Everything it needs is
// bundled: no CDN, no font or script from elsewhere (it must work on an air-gapped install).
export default defineConfig({
  root: import.meta.dirname,
  base: "/console/",
  logLevel: "warn",
  oxc: { jsx: { runtime: "automatic", importSource: "react" } },
  build: {
    outDir: path.resolve(import.meta.dirname, "../dist/console"),
    emptyOutDir: true,
    assetsDir: "assets",
    // WARNING: the Content-Security-Policy allows no inline script; Vite's preload polyfill would be one.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 2000,
    sourcemap: false,
  },
});
