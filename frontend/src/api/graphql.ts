//! POST /graphql for the few things only GraphQL answers to a dashboard token.

import { ApiError, apiRequest } from "./client";

interface GraphqlReply<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string; status?: number } }[];
}

export async function graphqlRequest<T>(
  query: string,
  variables: Record<string, unknown> = {},
  signal?: AbortSignal,
): Promise<T> {
  const reply = await apiRequest<GraphqlReply<T>>("/graphql", {
    method: "POST",
    body: { query, variables },
    signal,
  });
  const first = reply.errors?.[0];
  if (first || !reply.data) {
    throw new ApiError(first?.extensions?.status ?? 500, {
      message: first?.message ?? "GraphQL answered without data.",
      code: first?.extensions?.code ?? null,
    });
  }
  return reply.data;
}
