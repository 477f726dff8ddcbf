//! `GET /admin/upstreams`: every service's pool and its endpoints' state.

import { useQuery } from "@tanstack/react-query";
import { apiRequest } from "./client";

export type EndpointState = "eligible" | "pending" | "unhealthy" | "ejected" | "draining";

export interface Endpoint {
  address: string;
  weight: number;
  protocol: string;
  origin: string;
  health: string;
  state: EndpointState;
  eligible: boolean;
  ejected_for_ms: number | null;
  ejections: number;
  in_flight: number;
  latency_ewma_ms: number;
  consecutive_failures: number;
}

export interface Service {
  service: string;
  strategy: string;
  endpoints: Endpoint[];
}

export const UPSTREAMS_REFRESH_MS = 2000;

export const upstreamQueries = {
  all: () => ["upstreams"] as const,
  list: () => [...upstreamQueries.all(), "list"] as const,
};

export function useUpstreams() {
  return useQuery({
    queryKey: upstreamQueries.list(),
    queryFn: async ({ signal }) => (await apiRequest<{ data: Service[] }>("/admin/upstreams", { signal })).data,
    refetchInterval: UPSTREAMS_REFRESH_MS,
  });
}
