import { chat } from "./api";
import { expect, test } from "./fixtures";

test("create a key, read its secret once, revoke it, and see its requests fail", async ({ page, request, signIn, snap }) => {
  await signIn();
  await page.getByRole("link", { name: "Keys" }).click();
  await expect(page.getByRole("heading", { name: "API keys" })).toBeVisible();

  const form = page.getByRole("form", { name: "Create a key" });
  await form.getByLabel("Name").fill("e2e-team");
  await form.getByLabel("Owner").fill("qa");
  await form.getByLabel("Requests per minute").fill("120");
  await form.getByLabel("Token budget").fill("100000");
  await form.getByLabel("Max concurrent requests").fill("4");
  await form.getByLabel("Allowed models (comma-separated)").fill("echo, smollm2");
  await form.getByLabel("Expires in (days)").fill("30");
  await form.getByRole("button", { name: "Create key" }).click();

  const secret = page.getByLabel("Secret");
  await expect(secret).toHaveValue(/^sk-gw-/);
  const key = await secret.inputValue();
  await expect(page.getByText(/shown only once/)).toBeVisible();
  await expect(page.getByRole("button", { name: "Copy" })).toBeVisible();
  await snap("keys-secret");

  const row = page.getByRole("row").filter({ has: page.getByRole("rowheader", { name: "e2e-team" }) });
  await expect(row).toContainText("120 req/min");
  await expect(row).toContainText("models: echo, smollm2");
  await expect(row).toContainText("Active");
  await page.getByRole("button", { name: "I have stored it" }).click();
  await expect(page.getByLabel("Secret")).toHaveCount(0);
  await page.reload();
  await expect(row).toBeVisible();
  await expect(page.getByText(key)).toHaveCount(0);

  // The key works...
  const before = await chat(request, key, "echo", "hello");
  expect(before.status()).toBe(200);

  // ...limits can be edited...
  await page.getByRole("button", { name: "Edit limits of e2e-team" }).click();
  await page.getByRole("form", { name: "Edit limits of “e2e-team”" }).getByLabel("Requests per minute").fill("");
  await page.getByRole("form", { name: "Edit limits of “e2e-team”" }).getByLabel("Tokens per minute").fill("5000");
  await page.getByRole("button", { name: "Save limits" }).click();
  await expect(row).toContainText("5,000 tok/min");
  await expect(row).not.toContainText("req/min");

  // ...an invalid value is refused by the API, in words...
  await page.getByRole("form", { name: "Create a key" }).getByLabel("Name").fill("bad <name>");
  await page.getByRole("button", { name: "Create key" }).click();
  await expect(page.getByRole("alert")).toContainText("may only contain letters, digits, spaces and _ - . @");
  await snap("keys");

  // ...and after revoking (confirmed), requests with it fail.
  await row.getByRole("button", { name: "Revoke e2e-team" }).click();
  const dialog = page.getByRole("alertdialog", { name: "Revoke “e2e-team”?" });
  await expect(dialog).toBeVisible();
  await snap("keys-revoke-confirm");
  await dialog.getByRole("button", { name: "Revoke key" }).click();
  await expect(row).toContainText("Revoked");
  const after = await chat(request, key, "echo", "hello again");
  expect(after.status()).toBe(401);
  expect(((await after.json()) as { error: { code: string } }).error.code).toMatch(/key/);
});
