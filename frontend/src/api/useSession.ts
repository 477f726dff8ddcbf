//! The session as React state, following sign-in, sign-out and expiry.

import { useEffect, useSyncExternalStore } from "react";
import { loadSession, onSessionChange, signOut, type Session } from "./session";

let lastReason: "expired" | undefined;
onSessionChange((session, reason) => {
  lastReason = session ? undefined : reason;
});

/** Why the last session ended, for the sign-in page ("expired" or nothing). */
export function endReason(): "expired" | undefined {
  return lastReason;
}

export function useSession(): Session | null {
  const session = useSyncExternalStore(
    (notify) => onSessionChange(() => notify()),
    () => loadSession(),
  );
  // Sign out when the token's own expiry passes, even if no request reveals it.
  useEffect(() => {
    if (!session) return;
    const left = session.expiresAt - Date.now();
    const timer = window.setTimeout(() => signOut("expired"), Math.max(0, Math.min(left, 2 ** 31 - 1)));
    return () => window.clearTimeout(timer);
  }, [session]);
  return session;
}
