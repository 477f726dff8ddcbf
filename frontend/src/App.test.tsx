import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import { App, makeQueryClient } from "./App";
import { signOut } from "./api/session";
import i18n from "./i18n";
import { fakeFetch, fakeJwt } from "./testing/fakeFetch";

const overview = {
  window_secs: 60,
  uptime_secs: 90,
  requests_per_second: 2.5,
  error_rate: 0.01,
  latency_ms: { p50: 12, p99: 80 },
  overhead_ms: { p50: 0.3, p99: 1.2 },
  tokens_per_minute: 3400,
  active_streams: 3,
  websocket_sessions: 1,
  upstreams: { services: 3, endpoints: 4, eligible: 3, pending: 0, unhealthy: 1, ejected: 0, draining: 0 },
};

function quietClient() {
  const client = makeQueryClient();
  client.setDefaultOptions({ queries: { retry: false, refetchInterval: false } });
  return client;
}

describe("the app", () => {
  beforeEach(async () => {
    signOut();
    window.history.replaceState(null, "", "/");
    await i18n.changeLanguage("en");
  });

  it("signs an admin in and shows the live overview", async () => {
    const token = fakeJwt(Date.now() + 3_600_000);
    const calls = fakeFetch({
      "POST /auth/login": () => ({ body: { access_token: token, token_type: "bearer", expires_in: 3600, role: "admin" } }),
      "GET /admin/overview": () => ({ body: overview }),
    });
    const user = userEvent.setup();
    render(<App client={quietClient()} />);
    await user.type(screen.getByLabelText("Username"), "ada");
    await user.type(screen.getByLabelText("Password"), "pw");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByRole("heading", { name: "Overview" })).toBeInTheDocument();
    expect(await screen.findByRole("group", { name: "Requests per second" })).toHaveTextContent("2.5");
    expect(screen.getByRole("group", { name: "Error rate" })).toHaveTextContent("1%");
    expect(screen.getByText("Unhealthy:")).toBeInTheDocument();
    expect(sessionStorage.getItem("aigw.token")).toBe(token);
    expect(calls[0]?.body).toEqual({ username: "ada", password: "pw" });
    const nav = screen.getByRole("navigation", { name: "Main" });
    expect(nav).toHaveTextContent("Keys");
    expect(screen.getByRole("link", { name: "GraphiQL" })).toHaveAttribute("href", "/graphiql");
    await user.click(screen.getByRole("button", { name: "Sign out" }));
    expect(await screen.findByRole("heading", { name: "Sign in" })).toBeInTheDocument();
    expect(sessionStorage.getItem("aigw.token")).toBeNull();
  });

  it("says why sign-in failed", async () => {
    fakeFetch({
      "POST /auth/login": () => ({
        status: 401,
        body: { error: { message: "Incorrect username or password.", code: "invalid_credentials" } },
      }),
    });
    const user = userEvent.setup();
    render(<App client={quietClient()} />);
    await user.type(screen.getByLabelText("Username"), "ada");
    await user.type(screen.getByLabelText("Password"), "wrong");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Incorrect username or password.");
  });

  it("hides admin pages from a viewer", async () => {
    const token = fakeJwt(Date.now() + 3_600_000);
    fakeFetch({
      "POST /auth/login": () => ({ body: { access_token: token, token_type: "bearer", expires_in: 3600, role: "viewer" } }),
    });
    const user = userEvent.setup();
    render(<App client={quietClient()} />);
    await user.type(screen.getByLabelText("Username"), "val");
    await user.type(screen.getByLabelText("Password"), "pw");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByRole("heading", { name: "Playground" })).toBeInTheDocument();
    const nav = screen.getByRole("navigation", { name: "Main" });
    expect(nav).not.toHaveTextContent("Keys");
    expect(nav).not.toHaveTextContent("Overview");
    expect(screen.getByLabelText("My session (admin)")).toBeDisabled();
  });

  it("returns to sign-in with a message when the token is refused", async () => {
    sessionStorage.setItem("aigw.token", fakeJwt(Date.now() + 3_600_000));
    sessionStorage.setItem("aigw.role", "admin");
    fakeFetch({
      "GET /admin/overview": () => ({ status: 401, body: { error: { message: "Token expired", code: "invalid_token" } } }),
    });
    render(<App client={quietClient()} />);
    expect(await screen.findByRole("heading", { name: "Sign in" })).toBeInTheDocument();
    expect(screen.getByRole("status")).toHaveTextContent("Your session has expired. Please sign in again.");
  });
});
