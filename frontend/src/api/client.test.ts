import { describe, expect, it, vi } from "vitest";
import { fakeFetch, fakeJwt } from "../testing/fakeFetch";
import { ApiError, apiRequest } from "./client";
import { loadSession, signIn } from "./session";

describe("apiRequest", () => {
  it("sends the signed-in token and JSON, and returns the reply", async () => {
    const token = fakeJwt(Date.now() + 60_000);
    signIn({ token, role: "admin", username: "ada", expiresAt: Date.now() + 60_000 });
    const calls = fakeFetch({ "POST /admin/keys": () => ({ status: 201, body: { id: 7 } }) });
    await expect(apiRequest("/admin/keys", { method: "POST", body: { name: "a" } })).resolves.toEqual({ id: 7 });
    expect(calls[0]?.headers.Authorization).toBe(`Bearer ${token}`);
    expect(calls[0]?.body).toEqual({ name: "a" });
  });

  it("turns an OpenAI-shaped error into an ApiError with its words", async () => {
    fakeFetch({
      "POST /admin/keys": () => ({
        status: 400,
        body: {
          error: { message: "must not be negative", type: "invalid_request_error", code: "invalid_parameter", param: "rpm" },
        },
      }),
    });
    const error = await apiRequest("/admin/keys", { method: "POST", body: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 400, code: "invalid_parameter", param: "rpm", message: "must not be negative" });
  });

  it("signs out with 'expired' when the dashboard token is refused", async () => {
    signIn({ token: fakeJwt(Date.now() + 60_000), role: "admin", username: "ada", expiresAt: Date.now() + 60_000 });
    fakeFetch({ "GET /admin/keys": () => ({ status: 401, body: { error: { message: "expired", code: "invalid_token" } } }) });
    await expect(apiRequest("/admin/keys")).rejects.toMatchObject({ status: 401 });
    expect(loadSession()).toBeNull();
  });

  it("keeps the session when a pasted key is refused", async () => {
    signIn({ token: fakeJwt(Date.now() + 60_000), role: "admin", username: "ada", expiresAt: Date.now() + 60_000 });
    fakeFetch({ "GET /v1/models": () => ({ status: 401, body: { error: { message: "bad key" } } }) });
    await expect(apiRequest("/v1/models", { credential: "sk-gw-x" })).rejects.toMatchObject({ status: 401 });
    expect(loadSession()).not.toBeNull();
  });

  it("says the gateway is unreachable when fetch itself fails", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(() => Promise.reject(new TypeError("Failed to fetch"))),
    );
    await expect(apiRequest("/admin/keys")).rejects.toMatchObject({ status: 0, code: "network_error" });
  });
});
