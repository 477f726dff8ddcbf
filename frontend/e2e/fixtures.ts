//! The test fixture: the stack's address as baseURL, signing in as a user would, and a
//! full-page screenshot saved to the test's output (never to git).

import { dirname, join } from "node:path";
import { test as base, expect, type Page, type TestInfo } from "@playwright/test";
import { readState, type StackState } from "./stack";

interface Fixtures {
  stack: StackState;
  signIn: () => Promise<void>;
  snap: (name: string) => Promise<void>;
}

export const test = base.extend<Fixtures>({
  stack: async ({}, use) => {
    await use(readState());
  },
  // E2E_BASE_URL: the pages from somewhere else (a dev or preview server proxying to this stack).
  baseURL: async ({ stack }, use) => {
    await use(process.env.E2E_BASE_URL ?? stack.baseURL);
  },
  signIn: async ({ page, stack }, use) => {
    await use(async () => {
      await page.goto("/");
      await page.getByLabel("Username").fill(stack.admin.username);
      await page.getByLabel("Password").fill(stack.admin.password);
      await page.getByRole("button", { name: "Sign in" }).click();
      await expect(page.getByRole("button", { name: "Sign out" })).toBeVisible();
    });
  },
  snap: async ({ page }, use, testInfo: TestInfo) => {
    await use((name) => screenshot(page, testInfo, name));
  },
});

/** Every page's picture under e2e-output/screenshots/<name>.png (stable names), and in the HTML report. */
export async function screenshot(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const path = join(dirname(testInfo.project.outputDir), "screenshots", `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  await testInfo.attach(name, { path, contentType: "image/png" });
}

export { expect };
