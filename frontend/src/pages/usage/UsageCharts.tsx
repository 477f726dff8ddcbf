//! Totals and the two charts over time (requests; prompt and completion tokens).

import { useMemo } from "react";
import { useTranslation } from "react-i18next";
import type { UsageLine, UsageTotals as Totals } from "../../api/usage";
import { StatCard } from "../../components/StatCard";
import { TimeChart } from "../../components/TimeChart";
import { fmt } from "../../format";

export function UsageTotals({ sum }: { sum: Totals }) {
  const { t } = useTranslation();
  return (
    <div className="stats" aria-label={t("usage.totals")} role="group">
      <StatCard label={t("usage.columns.requests")} value={fmt.integer(sum.requests)} />
      <StatCard
        label={t("usage.columns.total_tokens")}
        value={fmt.integer(sum.total_tokens)}
        hint={t("usage.promptCompletion", {
          prompt: fmt.integer(sum.prompt_tokens),
          completion: fmt.integer(sum.completion_tokens),
        })}
      />
      <StatCard label={t("usage.columns.reported_requests")} value={fmt.integer(sum.requests - sum.estimated_requests)} />
      <StatCard label={t("usage.columns.estimated_requests")} value={fmt.integer(sum.estimated_requests)} />
      <StatCard label={t("usage.columns.cached_requests")} value={fmt.integer(sum.cached_requests)} />
    </div>
  );
}

/** `lines` are per day (group `YYYY-MM-DD`) or per hour (group: the hour's Unix ms). */
export function UsageCharts({ lines, hourly }: { lines: UsageLine[] | undefined; hourly: boolean }) {
  const { t } = useTranslation();
  const chart = useMemo(() => {
    const sorted = [...(lines ?? [])].sort((a, b) => (a.group < b.group ? -1 : 1));
    const at = (group: string) => (hourly ? Number(group) : Date.parse(`${group}T00:00:00Z`)) / 1000;
    return {
      times: sorted.map((line) => at(line.group)),
      requests: [{ label: t("usage.columns.requests"), values: sorted.map((l) => l.requests), color: "#2563eb" }],
      tokens: [
        { label: t("usage.columns.prompt_tokens"), values: sorted.map((l) => l.prompt_tokens), color: "#16a34a" },
        { label: t("usage.columns.completion_tokens"), values: sorted.map((l) => l.completion_tokens), color: "#d97706" },
      ],
    };
  }, [lines, hourly, t]);
  return (
    <div className="charts">
      <section className="card" aria-labelledby="requests-chart">
        <h2 id="requests-chart">{t("usage.requestsOverTime")}</h2>
        <TimeChart label={t("usage.requestsOverTime")} times={chart.times} series={chart.requests} bars />
      </section>
      <section className="card" aria-labelledby="tokens-chart">
        <h2 id="tokens-chart">{t("usage.tokensOverTime")}</h2>
        <TimeChart label={t("usage.tokensOverTime")} times={chart.times} series={chart.tokens} />
      </section>
    </div>
  );
}
