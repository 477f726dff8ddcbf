import { expect, test } from "./fixtures";

test("GraphiQL runs a query and shows the schema, with no network beyond the gateway", async ({
  page,
  baseURL,
  signIn,
  snap,
}) => {
  const elsewhere: string[] = [];
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(baseURL ?? "-") && !url.startsWith("data:") && !url.startsWith("blob:")) elsewhere.push(url);
  });
  await signIn();
  await page.getByRole("link", { name: "GraphiQL" }).click();
  await expect(page).toHaveURL(/\/graphiql$/);
  await expect(page.getByLabel("Credential (API key or dashboard token)")).not.toHaveValue("");

  await expect(page.getByRole("region", { name: "Operation Editor" })).toContainText("kind keyId admin");
  const result = page.getByRole("region", { name: /Result/i });
  // GraphiQL ignores Run until its editors have finished starting up: click until it answers.
  await expect(async () => {
    await page.getByRole("button", { name: /Execute query/ }).click();
    await expect(result).toContainText('"models"', { timeout: 2000 });
  }).toPass({ timeout: 30_000 });
  await expect(result).toContainText('"echo"');
  await expect(result).toContainText('"admin": true');

  await page.getByRole("button", { name: /Show Documentation Explorer/i }).click();
  const query = page.getByRole("link", { name: "Query", exact: true });
  await expect(query).toBeVisible();
  await query.click();
  await expect(page.getByText("usage", { exact: true }).first()).toBeVisible();
  await snap("graphiql");

  // The same page at GET /graphql, as the gateway serves it to browsers.
  await page.goto("/graphql");
  await expect(page.getByRole("button", { name: /Execute query/ })).toBeVisible();
  expect(elsewhere).toEqual([]);
});
