//! Requests the tests make beside the browser, as a script or curl would: an admin token, keys,
//! model calls. They go to the same gateway the page uses.

import type { APIRequestContext } from "@playwright/test";
import type { StackState } from "./stack";

export async function adminToken(request: APIRequestContext, stack: StackState): Promise<string> {
  const reply = await request.post("/auth/login", { data: stack.admin });
  if (!reply.ok()) throw new Error(`login failed: ${reply.status()} ${await reply.text()}`);
  return ((await reply.json()) as { access_token: string }).access_token;
}

export async function createKey(request: APIRequestContext, token: string, name: string): Promise<string> {
  const reply = await request.post("/admin/keys", { data: { name }, headers: { Authorization: `Bearer ${token}` } });
  if (reply.status() !== 201) throw new Error(`key creation failed: ${reply.status()} ${await reply.text()}`);
  return ((await reply.json()) as { key: string }).key;
}

export function chat(
  request: APIRequestContext,
  key: string,
  model: string,
  content: string,
  headers: Record<string, string> = {},
) {
  return request.post("/v1/chat/completions", {
    data: { model, messages: [{ role: "user", content }], max_tokens: 8 },
    headers: { Authorization: `Bearer ${key}`, ...headers },
  });
}
