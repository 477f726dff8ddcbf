//! The models a caller may pick: `GET /v1/models` with an API key; with the signed-in admin's
//! token, which `/v1` does not take, the same aliases from GraphQL's `models`.

import { useQuery } from "@tanstack/react-query";
import { apiRequest } from "./client";
import { graphqlRequest } from "./graphql";

export const modelQueries = {
  all: () => ["models"] as const,
  list: (credential: string | null) => [...modelQueries.all(), "list", credential ?? "session"] as const,
};

export async function fetchModels(apiKey: string | null, signal?: AbortSignal): Promise<string[]> {
  if (apiKey) {
    const reply = await apiRequest<{ data: { id: string }[] }>("/v1/models", { credential: apiKey, signal });
    return reply.data.map((model) => model.id);
  }
  const reply = await graphqlRequest<{ models: { name: string }[] }>("{ models { name } }", {}, signal);
  return reply.models.map((model) => model.name);
}

export function useModels(apiKey: string | null) {
  return useQuery({
    queryKey: modelQueries.list(apiKey),
    queryFn: ({ signal }) => fetchModels(apiKey, signal),
    staleTime: 30_000,
  });
}
