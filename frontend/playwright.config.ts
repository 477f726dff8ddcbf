// Browser tests against the real gateway, python-models and echo mock, in Debian's chromium
// (Playwright's own browser download cannot be fetched here).
import { execFileSync } from "node:child_process";
import { defineConfig } from "@playwright/test";

function chromium(): string {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  try {
    return execFileSync("which", ["chromium"], { encoding: "utf8" }).trim();
  } catch {
    throw new Error("chromium is not installed: run frontend/scripts/install.sh (apt-get install chromium)");
  }
}

export default defineConfig({
  testDir: "e2e",
  outputDir: "e2e-output/results",
  globalSetup: "./e2e/global-setup.ts",
  globalTeardown: "./e2e/global-teardown.ts",
  // One stack, shared state (keys, usage): one worker, in file order.
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 15_000 },
  reporter: [["list"], ["html", { outputFolder: "e2e-output/report", open: "never" }]],
  use: {
    browserName: "chromium",
    locale: "en-US",
    screenshot: "only-on-failure",
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: chromium(),
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    },
  },
});
