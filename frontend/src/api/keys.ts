//! API keys: `GET/POST /admin/keys`, `PATCH/DELETE /admin/keys/{id}`.

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { apiRequest } from "./client";

export interface Key {
  id: number;
  name: string;
  prefix: string;
  owner: string | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  rpm: number | null;
  tpm: number | null;
  token_budget: number | null;
  allowed_models: string[] | null;
  max_concurrency: number | null;
}

export interface CreatedKey extends Key {
  /** The secret: shown once, never again. */
  key: string;
}

export interface CreateKeyInput {
  name: string;
  owner?: string;
  rpm?: number;
  tpm?: number;
  token_budget?: number;
  max_concurrency?: number;
  allowed_models?: string[];
  expires_in_days?: number;
  expires_at?: number;
}

/** A partial update: an absent field stays, `null` clears the limit. */
export type KeyLimitsPatch = Partial<
  Record<"rpm" | "tpm" | "token_budget" | "max_concurrency" | "expires_at", number | null> & {
    allowed_models: string[] | null;
    name: string;
  }
>;

export type KeyStatus = "active" | "revoked" | "expired";

export function keyStatus(key: Key, now = Date.now()): KeyStatus {
  if (key.revoked_at !== null) return "revoked";
  if (key.expires_at !== null && key.expires_at <= now) return "expired";
  return "active";
}

export const keyQueries = {
  all: () => ["keys"] as const,
  list: () => [...keyQueries.all(), "list"] as const,
};

export function useKeys() {
  return useQuery({
    queryKey: keyQueries.list(),
    queryFn: async ({ signal }) => (await apiRequest<{ data: Key[] }>("/admin/keys", { signal })).data,
  });
}

export function useCreateKey() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (input: CreateKeyInput) => apiRequest<CreatedKey>("/admin/keys", { method: "POST", body: input }),
    onSuccess: () => client.invalidateQueries({ queryKey: keyQueries.all() }),
  });
}

export function useUpdateKey() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: ({ id, patch }: { id: number; patch: KeyLimitsPatch }) =>
      apiRequest<Key>(`/admin/keys/${id}`, { method: "PATCH", body: patch }),
    onSuccess: () => client.invalidateQueries({ queryKey: keyQueries.all() }),
  });
}

export function useRevokeKey() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (id: number) => apiRequest<{ id: number; revoked: boolean }>(`/admin/keys/${id}`, { method: "DELETE" }),
    onSuccess: () => client.invalidateQueries({ queryKey: keyQueries.all() }),
  });
}
