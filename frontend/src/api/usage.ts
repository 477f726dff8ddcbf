//! `GET /admin/usage?from=&to=&group_by=` (Unix ms, `to` exclusive): reports by key, model, day,
//! and hour (one request per hour of the range, since the gateway groups by day at most).

import { useQuery, useQueryClient } from "@tanstack/react-query";
import { apiRequest } from "./client";

export type UsageGroupBy = "key" | "model" | "day";
export type Granularity = "day" | "hour";

export interface UsageLine {
  group: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  estimated_requests: number;
  cached_requests: number;
}

export interface UsageRange {
  from: number;
  to: number;
}

export type UsageTotals = Omit<UsageLine, "group">;

const HOUR_MS = 3_600_000;
/** Above this many hours the hourly view would mean too many requests; days are offered instead. */
export const MAX_HOURS = 72;

export const usageQueries = {
  all: () => ["usage"] as const,
  report: (range: UsageRange, groupBy: UsageGroupBy) => [...usageQueries.all(), "report", groupBy, range.from, range.to] as const,
  hourly: (range: UsageRange) => [...usageQueries.all(), "hourly", range.from, range.to] as const,
};

export function fetchUsage(range: UsageRange, groupBy: UsageGroupBy, signal?: AbortSignal) {
  const query = new URLSearchParams({
    from: String(range.from),
    to: String(range.to),
    group_by: groupBy,
  });
  return apiRequest<{ data: UsageLine[] }>(`/admin/usage?${query}`, { signal }).then((r) => r.data);
}

export function totals(lines: readonly UsageLine[]): UsageTotals {
  const sum: UsageTotals = {
    requests: 0,
    prompt_tokens: 0,
    completion_tokens: 0,
    total_tokens: 0,
    estimated_requests: 0,
    cached_requests: 0,
  };
  for (const line of lines) {
    sum.requests += line.requests;
    sum.prompt_tokens += line.prompt_tokens;
    sum.completion_tokens += line.completion_tokens;
    sum.total_tokens += line.total_tokens;
    sum.estimated_requests += line.estimated_requests;
    sum.cached_requests += line.cached_requests;
  }
  return sum;
}

/** The hour boundaries covering a range: [start, end) pairs, the first aligned down to the hour. */
export function hourBuckets(range: UsageRange): UsageRange[] {
  const buckets: UsageRange[] = [];
  for (let start = Math.floor(range.from / HOUR_MS) * HOUR_MS; start < range.to; start += HOUR_MS) {
    buckets.push({ from: Math.max(start, range.from), to: Math.min(start + HOUR_MS, range.to) });
  }
  return buckets;
}

export function useUsage(range: UsageRange, groupBy: UsageGroupBy) {
  return useQuery({
    queryKey: usageQueries.report(range, groupBy),
    queryFn: ({ signal }) => fetchUsage(range, groupBy, signal),
  });
}

/** Lines per hour, the group being the hour's start as Unix ms text. */
export function useHourlyUsage(range: UsageRange, enabled: boolean) {
  return useQuery({
    queryKey: usageQueries.hourly(range),
    enabled: enabled && hourBuckets(range).length <= MAX_HOURS,
    queryFn: async ({ signal }) =>
      Promise.all(
        hourBuckets(range).map(async (bucket): Promise<UsageLine> => ({
          ...totals(await fetchUsage(bucket, "key", signal)),
          group: String(Math.floor(bucket.from / HOUR_MS) * HOUR_MS),
        })),
      ),
  });
}

/** Asks again for every usage report on screen (new requests are written in batches). */
export function useRefreshUsage(): () => Promise<void> {
  const client = useQueryClient();
  return () => client.invalidateQueries({ queryKey: usageQueries.all() });
}
