//! Stops every process the tests started (the latest state: a test may have restarted the mock)
//! and removes the temporary directory.

import { rmSync } from "node:fs";
import { readState, stopStack } from "./stack";

export default async function globalTeardown(): Promise<void> {
  if (!process.env.E2E_STATE) return;
  const state = readState();
  stopStack(state);
  if (!process.env.E2E_KEEP) rmSync(state.dir, { recursive: true, force: true });
}
