import { adminToken, createKey } from "./api";
import { expect, test } from "./fixtures";

test("stream a chat over WebSocket as the signed-in admin, and stop one", async ({ page, signIn, snap }) => {
  const sockets: string[] = [];
  page.on("websocket", (socket) => sockets.push(socket.url()));
  await signIn();
  await page.getByRole("link", { name: "Playground" }).click();
  await expect(page.getByRole("heading", { name: "Playground" })).toBeVisible();
  await expect(page.getByLabel("My session (admin)")).toBeChecked();
  const model = page.getByLabel("Model");
  await expect(model.getByRole("option", { name: "echo", exact: true })).toHaveCount(1);
  await model.selectOption("echo");

  await page.getByLabel("Message", { exact: true }).fill("Hello over the socket");
  await page.getByRole("button", { name: "Send" }).click();
  const stats = page.getByRole("definition");
  await expect(page.getByText("Time to first token")).toBeVisible();
  await expect(page.getByTestId("reply").last()).not.toBeEmpty();
  await expect(stats.nth(2)).toContainText(/\d+ prompt \+ \d+ completion = \d+ tokens/);
  await expect(stats.nth(0)).toContainText(/ms|sec/);
  await expect(stats.nth(1)).toHaveText(/^[\d.,]+$/);

  // The echo mock streams its words 40 ms apart: Stop lands mid-stream.
  await page.getByLabel("Message", { exact: true }).fill("A second question, to be stopped");
  await page.getByRole("button", { name: "Send" }).click();
  await expect(page.getByTestId("reply").last()).not.toBeEmpty();
  await page.getByRole("button", { name: "Stop" }).click();
  await expect(page.getByText("(stopped)")).toBeVisible();
  await expect(page.getByRole("button", { name: "Stop" })).toBeDisabled();
  await snap("playground");

  // A real model streams token by token too.
  await model.selectOption("smollm2");
  await page.getByLabel("Max tokens").fill("12");
  await page.getByLabel("Message", { exact: true }).fill("Name a colour.");
  await page.getByRole("button", { name: "Send" }).click();
  await expect(stats.nth(2)).toContainText(/completion = \d+ tokens/, { timeout: 45_000 });

  expect(sockets.length).toBeGreaterThan(0);
  for (const url of sockets) {
    expect(url).toMatch(/\/v1\/ws\?ticket=wst_/);
    expect(url).not.toContain("eyJ");
  }
});

test("the playground works with a pasted API key and says why a bad one fails", async ({ page, request, stack, signIn }) => {
  const key = await createKey(request, await adminToken(request, stack), "playground-key");
  await signIn();
  await page.getByRole("link", { name: "Playground" }).click();
  await page.getByLabel("An API key").check();
  await page.getByLabel("API key", { exact: true }).fill(key);
  await expect(page.getByLabel("Model").getByRole("option", { name: "echo", exact: true })).toHaveCount(1);
  await page.getByLabel("Model").selectOption("echo");
  await page.getByLabel("Message", { exact: true }).fill("Hi with a key");
  await page.getByRole("button", { name: "Send" }).click();
  await expect(page.getByRole("definition").nth(2)).toContainText(/= \d+ tokens/);

  await page.getByLabel("API key", { exact: true }).fill("sk-gw-not-a-real-key");
  await expect(page.getByRole("alert")).toContainText(/API key/i);
  await expect(page.getByRole("button", { name: "Send" })).toBeDisabled();
});
