//! Usage over time (per day or hour), by model and by key, for a date range: totals, reported
//! vs estimated tokens, cached answers, and a CSV of the table shown.

import { useMemo, useState } from "react";
import { useTranslation } from "react-i18next";
import { useKeys } from "../../api/keys";
import { hourBuckets, MAX_HOURS, totals, useHourlyUsage, useRefreshUsage, useUsage, type Granularity } from "../../api/usage";
import { ErrorText } from "../../components/ErrorText";
import { StatCard } from "../../components/StatCard";
import { TimeChart } from "../../components/TimeChart";
import { fmt } from "../../format";
import { lastDays, rangeOf } from "./range";
import { UsageTable, type Row } from "./UsageTable";

type View = "time" | "model" | "key";

export function UsagePage() {
  const { t } = useTranslation();
  const [dates, setDates] = useState(() => lastDays(7));
  const [granularity, setGranularity] = useState<Granularity>("day");
  const [view, setView] = useState<View>("time");
  const range = useMemo(() => rangeOf(dates.from, dates.to), [dates]);
  const safeRange = range ?? { from: 0, to: 1 };
  const hoursAllowed = hourBuckets(safeRange).length <= MAX_HOURS;
  const hourly = granularity === "hour" && hoursAllowed;
  const byDay = useUsage(safeRange, "day");
  const byHour = useHourlyUsage(safeRange, hourly);
  const byModel = useUsage(safeRange, "model");
  const byKey = useUsage(safeRange, "key");
  const keys = useKeys();
  const refresh = useRefreshUsage();
  const keyNames = useMemo(() => new Map((keys.data ?? []).map((k) => [String(k.id), k.name])), [keys.data]);

  const timeData = hourly ? byHour.data : byDay.data;
  const timeLines = timeData ?? [];
  // Empty hours would fill the table with zeros; the chart still shows them.
  const timeRows: Row[] = timeLines.filter((line) => !hourly || line.requests > 0).map((line) => ({
    label: hourly ? fmt.hour(Number(line.group)) : fmt.day(line.group),
    line,
  }));
  const chart = useMemo(() => {
    const lines = [...(timeData ?? [])].sort((a, b) => (a.group < b.group ? -1 : 1));
    const at = (group: string) => (hourly ? Number(group) : Date.parse(`${group}T00:00:00Z`)) / 1000;
    return {
      times: lines.map((line) => at(line.group)),
      requests: [{ label: t("usage.columns.requests"), values: lines.map((l) => l.requests), color: "#2563eb" }],
      tokens: [
        { label: t("usage.columns.prompt_tokens"), values: lines.map((l) => l.prompt_tokens), color: "#16a34a" },
        { label: t("usage.columns.completion_tokens"), values: lines.map((l) => l.completion_tokens), color: "#d97706" },
      ],
    };
  }, [timeData, hourly, t]);

  const sum = totals(byModel.data ?? []);
  const rows: Record<View, Row[]> = {
    time: timeRows,
    model: (byModel.data ?? []).map((line) => ({ label: line.group, line })),
    key: (byKey.data ?? []).map((line) => ({
      label: line.group === "none" ? t("usage.noKey") : (keyNames.get(line.group) ?? `#${line.group}`),
      line,
    })),
  };
  const groupLabels: Record<View, string> = {
    time: t(hourly ? "usage.hour" : "usage.day"),
    model: t("usage.model"),
    key: t("usage.key"),
  };
  const error = byDay.error ?? byHour.error ?? byModel.error ?? byKey.error;
  return (
    <>
      <h1>{t("usage.title")}</h1>
      <form className="card toolbar" aria-label={t("usage.rangeLabel")} onSubmit={(e) => e.preventDefault()}>
        <label>
          {t("usage.from")}
          <input type="date" value={dates.from} max={dates.to} onChange={(e) => setDates({ ...dates, from: e.target.value })} />
        </label>
        <label>
          {t("usage.to")}
          <input type="date" value={dates.to} min={dates.from} onChange={(e) => setDates({ ...dates, to: e.target.value })} />
        </label>
        <div role="group" aria-label={t("usage.presets")} className="presets">
          {[1, 7, 30].map((days) => (
            <button type="button" key={days} onClick={() => setDates(lastDays(days))}>
              {t("usage.lastDays", { count: days })}
            </button>
          ))}
        </div>
        <label>
          {t("usage.granularity")}
          <select value={granularity} onChange={(e) => setGranularity(e.target.value === "hour" ? "hour" : "day")}>
            <option value="day">{t("usage.perDay")}</option>
            <option value="hour">{t("usage.perHour")}</option>
          </select>
        </label>
        <button type="button" onClick={() => void refresh()}>
          {t("usage.refresh")}
        </button>
        {range === null ? <p role="alert" className="error">{t("usage.badRange")}</p> : null}
        {granularity === "hour" && !hoursAllowed ? (
          <p role="status" className="notice">{t("usage.hourLimit", { hours: MAX_HOURS })}</p>
        ) : null}
      </form>
      <ErrorText error={error} />
      <div className="stats" aria-label={t("usage.totals")} role="group">
        <StatCard label={t("usage.columns.requests")} value={fmt.integer(sum.requests)} />
        <StatCard label={t("usage.columns.total_tokens")} value={fmt.integer(sum.total_tokens)}
          hint={t("usage.promptCompletion", { prompt: fmt.integer(sum.prompt_tokens), completion: fmt.integer(sum.completion_tokens) })} />
        <StatCard label={t("usage.columns.reported_requests")} value={fmt.integer(sum.requests - sum.estimated_requests)} />
        <StatCard label={t("usage.columns.estimated_requests")} value={fmt.integer(sum.estimated_requests)} />
        <StatCard label={t("usage.columns.cached_requests")} value={fmt.integer(sum.cached_requests)} />
      </div>
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
      <section className="card" aria-labelledby="table-title">
        <h2 id="table-title">{t("usage.tableTitle")}</h2>
        <div role="radiogroup" aria-label={t("usage.groupBy")} className="segmented">
          {(["time", "model", "key"] as const).map((option) => (
            <label key={option}>
              <input type="radio" name="view" value={option} checked={view === option} onChange={() => setView(option)} />
              {t(`usage.views.${option}`)}
            </label>
          ))}
        </div>
        <UsageTable
          caption={t(`usage.views.${view}`)}
          groupLabel={groupLabels[view]}
          rows={rows[view]}
          filename={`usage-${view}-${dates.from}-${dates.to}.csv`}
        />
      </section>
    </>
  );
}
