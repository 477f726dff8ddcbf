import { expect, test } from "./fixtures";

test("sign in, see the live overview, sign out", async ({ page, stack, signIn, snap }) => {
  await page.goto("/");
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  await snap("signin");
  await page.getByLabel("Username").fill(stack.admin.username);
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("Incorrect username or password.");

  await signIn();
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  await expect(page.getByRole("group", { name: "Requests per second" })).toBeVisible();
  await expect(page.getByRole("heading", { name: "Upstream health" })).toBeVisible();
  await expect(page.getByText(/2 services, 2 endpoints/)).toBeVisible();
  // Live: the uptime line moves on its own.
  const uptime = page.getByText(/up for/);
  const first = await uptime.textContent();
  await expect(uptime).not.toHaveText(first ?? "", { timeout: 10_000 });
  await snap("overview");

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  await page.reload();
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
});

test("an expired session returns to sign-in with a message", async ({ page, signIn }) => {
  await signIn();
  // A token the gateway no longer accepts (as after expiry or a rotated secret).
  await page.evaluate(() => {
    const [head, , sig] = (sessionStorage.getItem("aigw.token") ?? "").split(".");
    const claims = btoa(JSON.stringify({ sub: "admin", role: "admin", exp: Math.floor(Date.now() / 1000) + 600 })).replace(
      /=+$/,
      "",
    );
    sessionStorage.setItem("aigw.token", `${head}.${claims}.${sig}`);
  });
  await page.goto("/keys");
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  await expect(page.getByRole("status")).toHaveText("Your session has expired. Please sign in again.");
});

test("switch the language, and a Chinese browser starts in Chinese", async ({ page, browser, baseURL, signIn, snap }) => {
  await signIn();
  await page.getByLabel("Language").selectOption({ label: "简体中文" });
  await expect(page.getByRole("heading", { name: "概览" })).toBeVisible();
  await expect(page.getByRole("link", { name: "密钥" })).toBeVisible();
  await expect(page.locator("html")).toHaveAttribute("lang", "zh-CN");
  await snap("overview-zh-CN");
  await page.getByRole("link", { name: "用量" }).click();
  await expect(page.getByRole("heading", { name: "用量" })).toBeVisible();
  await page.reload();
  await expect(page.getByRole("heading", { name: "用量" })).toBeVisible();
  await page.getByLabel("语言").selectOption({ label: "English" });
  await expect(page.getByRole("heading", { name: "Usage" })).toBeVisible();

  const chinese = await browser.newContext({ locale: "zh-CN", baseURL });
  const other = await chinese.newPage();
  await other.goto("/");
  await expect(other.getByRole("heading", { name: "登录" })).toBeVisible();
  await expect(other.getByLabel("用户名")).toBeVisible();
  await chinese.close();
});
