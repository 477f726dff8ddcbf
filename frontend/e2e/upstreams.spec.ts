import { spawn } from "node:child_process";
import { openSync } from "node:fs";
import { join } from "node:path";
import { expect, test } from "./fixtures";
import { MOCK_BIN, ROOT, updateState } from "./stack";

test("an endpoint turns unhealthy on Upstreams when its mock stops, and recovers", async ({ page, stack, signIn, snap }) => {
  await signIn();
  await page.getByRole("link", { name: "Upstreams" }).click();
  await expect(page.getByRole("heading", { name: "Upstreams", level: 1 })).toBeVisible();
  const echo = page.getByRole("region", { name: /^echo/ });
  const endpoint = echo
    .getByRole("row")
    .filter({ has: page.getByRole("rowheader", { name: new RegExp(stack.echo.bind.replace(/\./g, "\\.")) }) });
  await expect(endpoint).toContainText("Eligible");
  await expect(endpoint).toContainText("Static file");
  await expect(page.getByRole("region", { name: /^python-models/ })).toContainText("Eligible");
  await snap("upstreams");

  process.kill(-stack.echo.pid, "SIGTERM");
  // Health checks every 2 s, three failures in a row: the page refreshes by itself.
  await expect(endpoint).toContainText(/Unhealthy|Ejected/, { timeout: 30_000 });
  await snap("upstreams-unhealthy");

  const log = openSync(join(stack.dir, "echo.log"), "a");
  const mock = spawn(MOCK_BIN, stack.echo.args, { cwd: ROOT, stdio: ["ignore", log, log], detached: true });
  mock.unref();
  updateState({ ...stack, echo: { ...stack.echo, pid: mock.pid ?? 0 } });
  await expect(endpoint).toContainText("Eligible", { timeout: 30_000 });
});
