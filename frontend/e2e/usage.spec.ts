import { readFileSync } from "node:fs";
import { adminToken, chat, createKey } from "./api";
import { expect, test } from "./fixtures";

test("usage appears on the Usage page after requests, and exports as CSV", async ({ page, request, stack, signIn, snap }) => {
  const key = await createKey(request, await adminToken(request, stack), "usage-key");
  for (const content of ["one", "two", "three"]) expect((await chat(request, key, "echo", content)).status()).toBe(200);
  // The same deterministic request twice: the second is a cached answer.
  const cached = { "x-gateway-cache": "true" };
  expect((await chat(request, key, "echo", "cache me", cached)).status()).toBe(200);
  const hit = await chat(request, key, "echo", "cache me", cached);
  expect(hit.headers()["x-cache"]).toBe("HIT");

  await signIn();
  await page.getByRole("link", { name: "Usage" }).click();
  await expect(page.getByRole("heading", { name: "Usage" })).toBeVisible();
  await page.getByRole("radio", { name: "By key" }).check();
  const keyRow = page.getByRole("row").filter({ has: page.getByRole("rowheader", { name: "usage-key" }) });
  // Usage rows are written in batches: the page shows them once the recorder has flushed.
  await expect(async () => {
    await page.getByRole("button", { name: "Refresh" }).click();
    await expect(keyRow).toBeVisible({ timeout: 1000 });
  }).toPass({ timeout: 20_000 });
  const cells = keyRow.getByRole("cell");
  await expect(cells.nth(0)).toHaveText("5");
  await expect(cells.nth(6)).toHaveText("1");

  await page.getByRole("radio", { name: "By model" }).check();
  await expect(page.getByRole("rowheader", { name: "echo" })).toBeVisible();
  const totals = page.getByRole("group", { name: "Totals" });
  await expect(totals.getByRole("group", { name: "Cached answers" })).not.toContainText(/^Cached answers0$/);

  await page.getByLabel("Time step").selectOption("hour");
  await page.getByRole("button", { name: "Today" }).click();
  await page.getByRole("radio", { name: "Over time" }).check();
  await expect(page.getByRole("columnheader", { name: "Hour" })).toBeVisible();
  await expect(page.getByRole("table").getByRole("row")).not.toHaveCount(1);
  await snap("usage");

  await page.getByRole("radio", { name: "By key" }).check();
  const download = page.waitForEvent("download");
  await page.getByRole("button", { name: "Export CSV" }).click();
  const file = await (await download).path();
  const csv = readFileSync(file, "utf8");
  expect(csv.split("\r\n")[0]).toBe(
    "Key,Requests,Prompt tokens,Completion tokens,Total tokens,Tokens reported,Tokens estimated,Cached answers",
  );
  expect(csv).toMatch(/\r\nusage-key,5,\d+,\d+,\d+,\d+,\d+,1\r\n/);
});
