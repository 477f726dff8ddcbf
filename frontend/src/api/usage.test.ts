import { describe, expect, it } from "vitest";
import { fakeFetch } from "../testing/fakeFetch";
import { fetchUsage, hourBuckets, totals, usageQueries, type UsageLine } from "./usage";

const line = (group: string, requests: number, tokens: number): UsageLine => ({
  group,
  requests,
  prompt_tokens: tokens,
  completion_tokens: tokens * 2,
  total_tokens: tokens * 3,
  estimated_requests: 1,
  cached_requests: 0,
});

describe("usage data", () => {
  it("adds lines up", () => {
    expect(totals([line("a", 2, 10), line("b", 3, 5)])).toEqual({
      requests: 5,
      prompt_tokens: 15,
      completion_tokens: 30,
      total_tokens: 45,
      estimated_requests: 2,
      cached_requests: 0,
    });
    expect(totals([]).requests).toBe(0);
  });

  it("cuts a range into clipped hours", () => {
    const hour = 3_600_000;
    const buckets = hourBuckets({ from: 10 * hour + 5, to: 12 * hour + 7 });
    expect(buckets).toEqual([
      { from: 10 * hour + 5, to: 11 * hour },
      { from: 11 * hour, to: 12 * hour },
      { from: 12 * hour, to: 12 * hour + 7 },
    ]);
  });

  it("has one key per range and grouping", () => {
    const range = { from: 1, to: 2 };
    expect(usageQueries.report(range, "model")).toEqual(["usage", "report", "model", 1, 2]);
    expect(usageQueries.report(range, "model")).not.toEqual(usageQueries.report(range, "key"));
    expect(usageQueries.hourly(range)[0]).toBe(usageQueries.all()[0]);
  });

  it("asks the admin API with Unix ms and the grouping", async () => {
    const calls = fakeFetch({ "GET /admin/usage": () => ({ body: { object: "list", data: [line("echo", 1, 1)] } }) });
    const lines = await fetchUsage({ from: 1000, to: 2000 }, "model");
    expect(lines).toHaveLength(1);
    expect(calls[0]?.path).toBe("/admin/usage?from=1000&to=2000&group_by=model");
  });
});
