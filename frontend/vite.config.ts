/// <reference types="vitest/config" />
// The dashboard (index.html) and the offline GraphiQL page (graphiql.html) are two pages of one
// build; the dev server proxies the gateway's routes so the SPA runs against a local gateway.
import { resolve } from "node:path";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const gateway = process.env.GATEWAY_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  build: {
    // Hashed names under assets/: the gateway and nginx serve them with an immutable cache header.
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 4000,
    rollupOptions: {
      // graphiql's React-compiler output marks modules "use no memo"; bundling drops the hint, harmlessly.
      onwarn(warning, warn) {
        if (warning.code !== "MODULE_LEVEL_DIRECTIVE") warn(warning);
      },
      input: {
        main: resolve(import.meta.dirname, "index.html"),
        graphiql: resolve(import.meta.dirname, "graphiql.html"),
      },
    },
  },
  server: {
    port: 3000,
    strictPort: true,
    proxy: {
      "/v1": { target: gateway, ws: true, changeOrigin: false },
      "/admin": { target: gateway },
      "/auth": { target: gateway },
      "/graphql": { target: gateway },
    },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test-setup.ts"],
    restoreMocks: true,
  },
});
