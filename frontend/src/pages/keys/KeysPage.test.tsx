import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import type { Key } from "../../api/keys";
import i18n from "../../i18n";
import { fakeFetch } from "../../testing/fakeFetch";
import { renderPage } from "../../testing/render";
import { KeysPage } from "./KeysPage";

const key = (id: number, name: string, extra: Partial<Key> = {}): Key => ({
  id,
  name,
  prefix: `sk-gw-${id}ab`,
  owner: "ops",
  created_at: Date.UTC(2026, 0, 1),
  expires_at: null,
  revoked_at: null,
  rpm: 60,
  tpm: null,
  token_budget: 1000,
  allowed_models: null,
  max_concurrency: null,
  ...extra,
});

describe("Keys page", () => {
  beforeEach(async () => {
    await i18n.changeLanguage("en");
  });

  it("lists keys with limits, budget used from usage, and status", async () => {
    fakeFetch({
      "GET /admin/keys": () => ({ body: { data: [key(1, "alpha"), key(2, "beta", { revoked_at: 5 })] } }),
      "GET /admin/usage": () => ({
        body: {
          data: [
            {
              group: "1",
              requests: 2,
              prompt_tokens: 100,
              completion_tokens: 150,
              total_tokens: 250,
              estimated_requests: 0,
              cached_requests: 0,
            },
          ],
        },
      }),
    });
    renderPage(<KeysPage />);
    const alpha = (await screen.findByRole("rowheader", { name: "alpha" })).closest("tr") as HTMLElement;
    expect(within(alpha).getByText("60 req/min")).toBeInTheDocument();
    expect(await within(alpha).findByText("250 / 1,000")).toBeInTheDocument();
    expect(within(alpha).getByText("750 remaining")).toBeInTheDocument();
    expect(within(alpha).getByText("Active")).toBeInTheDocument();
    const beta = screen.getByRole("rowheader", { name: "beta" }).closest("tr") as HTMLElement;
    expect(within(beta).getByText("Revoked")).toBeInTheDocument();
    expect(within(beta).queryByRole("button", { name: /revoke/i })).toBeNull();
  });

  it("creates a key and shows its secret once, with a warning", async () => {
    const calls = fakeFetch({
      "GET /admin/keys": () => ({ body: { data: [] } }),
      "GET /admin/usage": () => ({ body: { data: [] } }),
      "POST /admin/keys": () => ({ status: 201, body: { ...key(9, "team-a"), key: "sk-gw-THESECRET" } }),
    });
    const user = userEvent.setup();
    renderPage(<KeysPage />);
    await user.type(screen.getByLabelText("Name"), "team-a");
    await user.type(screen.getByLabelText("Requests per minute"), "60");
    await user.type(screen.getByLabelText("Allowed models (comma-separated)"), "echo, smollm2");
    await user.click(screen.getByRole("button", { name: "Create key" }));
    expect(await screen.findByLabelText("Secret")).toHaveValue("sk-gw-THESECRET");
    expect(screen.getByText(/shown only once/)).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Copy" })).toBeInTheDocument();
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({
      name: "team-a",
      rpm: 60,
      allowed_models: ["echo", "smollm2"],
    });
    await user.click(screen.getByRole("button", { name: "I have stored it" }));
    expect(screen.queryByDisplayValue("sk-gw-THESECRET")).toBeNull();
  });

  it("shows the API's refusal inline, in words", async () => {
    fakeFetch({
      "GET /admin/keys": () => ({ body: { data: [] } }),
      "GET /admin/usage": () => ({ body: { data: [] } }),
      "POST /admin/keys": () => ({
        status: 400,
        body: {
          error: { message: "may only contain letters, digits, spaces and _ - . @", code: "invalid_parameter", param: "name" },
        },
      }),
    });
    const user = userEvent.setup();
    renderPage(<KeysPage />);
    await user.type(screen.getByLabelText("Name"), "<b>");
    await user.click(screen.getByRole("button", { name: "Create key" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("name: may only contain letters, digits, spaces and _ - . @");
  });

  it("catches a non-number before sending", async () => {
    const calls = fakeFetch({
      "GET /admin/keys": () => ({ body: { data: [] } }),
      "GET /admin/usage": () => ({ body: { data: [] } }),
    });
    const user = userEvent.setup();
    renderPage(<KeysPage />);
    await user.type(screen.getByLabelText("Name"), "a");
    await user.type(screen.getByLabelText("Tokens per minute"), "lots");
    await user.click(screen.getByRole("button", { name: "Create key" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Tokens per minute must be a whole number.");
    expect(calls.some((c) => c.method === "POST")).toBe(false);
  });

  it("revokes only after confirmation", async () => {
    const calls = fakeFetch({
      "GET /admin/keys": () => ({ body: { data: [key(4, "gamma")] } }),
      "GET /admin/usage": () => ({ body: { data: [] } }),
      "DELETE /admin/keys/4": () => ({ body: { id: 4, revoked: true } }),
    });
    const user = userEvent.setup();
    renderPage(<KeysPage />);
    await user.click(await screen.findByRole("button", { name: "Revoke gamma" }));
    const dialog = screen.getByRole("alertdialog", { name: "Revoke “gamma”?" });
    expect(within(dialog).getByRole("button", { name: "Cancel" })).toHaveFocus();
    await user.keyboard("{Escape}");
    expect(screen.queryByRole("alertdialog")).toBeNull();
    expect(calls.some((c) => c.method === "DELETE")).toBe(false);
    await user.click(screen.getByRole("button", { name: "Revoke gamma" }));
    await user.click(screen.getByRole("button", { name: "Revoke key" }));
    await waitFor(() => expect(calls.some((c) => c.method === "DELETE" && c.path === "/admin/keys/4")).toBe(true));
  });

  it("edits limits, clearing the blank ones", async () => {
    const calls = fakeFetch({
      "GET /admin/keys": () => ({ body: { data: [key(5, "delta")] } }),
      "GET /admin/usage": () => ({ body: { data: [] } }),
      "PATCH /admin/keys/5": () => ({ body: key(5, "delta", { rpm: null, tpm: 900 }) }),
    });
    const user = userEvent.setup();
    renderPage(<KeysPage />);
    await user.click(await screen.findByRole("button", { name: "Edit limits of delta" }));
    await user.clear(screen.getByLabelText("Requests per minute"));
    await user.type(screen.getByLabelText("Tokens per minute"), "900");
    await user.click(screen.getByRole("button", { name: "Save limits" }));
    await waitFor(() =>
      expect(calls.find((c) => c.method === "PATCH")?.body).toMatchObject({ rpm: null, tpm: 900, token_budget: 1000 }),
    );
    expect(await screen.findByRole("heading", { name: "Create a key" })).toBeInTheDocument();
  });
});
