//! `GET /admin/overview`: the gateway's own live counters, refreshed every few seconds.

import { useQuery } from "@tanstack/react-query";
import { apiRequest } from "./client";

export interface Overview {
  window_secs: number;
  uptime_secs: number;
  requests_per_second: number;
  error_rate: number;
  latency_ms: { p50: number; p99: number };
  overhead_ms: { p50: number; p99: number };
  tokens_per_minute: number;
  active_streams: number;
  websocket_sessions: number;
  upstreams: {
    services: number;
    endpoints: number;
    eligible: number;
    pending: number;
    unhealthy: number;
    ejected: number;
    draining: number;
  };
}

export const OVERVIEW_REFRESH_MS = 3000;

export const overviewQueries = {
  all: () => ["overview"] as const,
  current: () => [...overviewQueries.all(), "current"] as const,
};

export function useOverview() {
  return useQuery({
    queryKey: overviewQueries.current(),
    queryFn: ({ signal }) => apiRequest<Overview>("/admin/overview", { signal }),
    refetchInterval: OVERVIEW_REFRESH_MS,
  });
}
