import { describe, expect, it, vi } from "vitest";
import { fakeJwt } from "../testing/fakeFetch";
import { jwtExpiry, loadSession, onSessionChange, signIn, signOut, TOKEN_KEY } from "./session";

describe("session", () => {
  it("reads the expiry of a JWT and nothing from other text", () => {
    expect(jwtExpiry(fakeJwt(1_800_000_000_000))).toBe(1_800_000_000_000);
    expect(jwtExpiry("sk-gw-abc")).toBeNull();
    expect(jwtExpiry("a.%%%.c")).toBeNull();
  });

  it("keeps the token in sessionStorage under aigw.token and forgets it on sign-out", () => {
    const token = fakeJwt(Date.now() + 60_000);
    const seen: (string | null)[] = [];
    const stop = onSessionChange((session, reason) => seen.push(session ? session.token : `out:${reason ?? ""}`));
    signIn({ token, role: "admin", username: "ada", expiresAt: Date.now() + 60_000 });
    expect(sessionStorage.getItem(TOKEN_KEY)).toBe(token);
    expect(localStorage.getItem(TOKEN_KEY)).toBeNull();
    signOut("expired");
    expect(sessionStorage.getItem(TOKEN_KEY)).toBeNull();
    expect(loadSession()).toBeNull();
    expect(seen).toEqual([token, "out:expired"]);
    stop();
  });

  it("drops a stored token that has expired", () => {
    sessionStorage.setItem(TOKEN_KEY, fakeJwt(Date.now() - 1000));
    expect(loadSession()).toBeNull();
    expect(sessionStorage.getItem(TOKEN_KEY)).toBeNull();
  });

  it("restores a stored live token with its role", () => {
    const expires = Date.now() + 3_600_000;
    sessionStorage.setItem(TOKEN_KEY, fakeJwt(expires));
    sessionStorage.setItem("aigw.role", "viewer");
    const session = loadSession();
    expect(session?.role).toBe("viewer");
    expect(session?.expiresAt).toBe(Math.floor(expires / 1000) * 1000);
    signOut();
    vi.restoreAllMocks();
  });
});
