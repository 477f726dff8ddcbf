//! Starts the stack once for every test; its state file path reaches the workers through E2E_STATE.

import { join } from "node:path";
import { startStack } from "./stack";

export default async function globalSetup(): Promise<void> {
  const state = await startStack();
  process.env.E2E_STATE = join(state.dir, "state.json");
}
