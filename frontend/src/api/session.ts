//! The signed-in credential: kept in memory and in sessionStorage (`aigw.token`) so a reload
//! and the GraphiQL page can use it; never in localStorage, never in a URL.

export const TOKEN_KEY = "aigw.token";
const ROLE_KEY = "aigw.role";
const USER_KEY = "aigw.user";

export type Role = "admin" | "viewer";

export interface Session {
  token: string;
  role: Role;
  username: string;
  /** Unix ms when the token stops being accepted. */
  expiresAt: number;
}

type Listener = (session: Session | null, reason?: "expired") => void;

let current: Session | null = null;
const listeners = new Set<Listener>();

/** The `exp` claim (seconds) of a JWT, if it has one; the token is not verified here. */
export function jwtExpiry(token: string): number | null {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const claims: unknown = JSON.parse(json);
    if (typeof claims === "object" && claims !== null && "exp" in claims && typeof claims.exp === "number") {
      return claims.exp * 1000;
    }
  } catch {
    return null;
  }
  return null;
}

function parseRole(value: string | null): Role {
  return value === "admin" ? "admin" : "viewer";
}

export function loadSession(now = Date.now()): Session | null {
  if (current) return current;
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  const expiresAt = jwtExpiry(token);
  if (expiresAt === null || expiresAt <= now) {
    clearStorage();
    return null;
  }
  current = {
    token,
    role: parseRole(sessionStorage.getItem(ROLE_KEY)),
    username: sessionStorage.getItem(USER_KEY) ?? "",
    expiresAt,
  };
  return current;
}

export function getToken(): string | null {
  return loadSession()?.token ?? null;
}

export function signIn(session: Session): void {
  current = session;
  sessionStorage.setItem(TOKEN_KEY, session.token);
  sessionStorage.setItem(ROLE_KEY, session.role);
  sessionStorage.setItem(USER_KEY, session.username);
  listeners.forEach((listener) => listener(session));
}

function clearStorage(): void {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ROLE_KEY);
  sessionStorage.removeItem(USER_KEY);
}

/** Ends the session; `expired` tells the sign-in page to say why. */
export function signOut(reason?: "expired"): void {
  const wasSignedIn = current !== null || sessionStorage.getItem(TOKEN_KEY) !== null;
  current = null;
  clearStorage();
  if (wasSignedIn) listeners.forEach((listener) => listener(null, reason));
}

export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => {
    listeners.delete(listener);
  };
}
