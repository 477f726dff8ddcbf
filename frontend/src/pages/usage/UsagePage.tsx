//! Usage over time (per day or hour), by model and by key, for a date range: totals, reported
//! vs estimated tokens, cached answers, and a CSV of the table shown.

import { useMemo, useState } from "react";
import { useTranslation } from "react-i18next";
import { useKeys } from "../../api/keys";
import { hourBuckets, MAX_HOURS, totals, useHourlyUsage, useUsage, type Granularity } from "../../api/usage";
import { ErrorText } from "../../components/ErrorText";
import { fmt } from "../../format";
import { lastDays, rangeOf } from "./range";
import { RangeToolbar } from "./RangeToolbar";
import { UsageCharts, UsageTotals } from "./UsageCharts";
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
  const keyNames = useMemo(() => new Map((keys.data ?? []).map((k) => [String(k.id), k.name])), [keys.data]);
  const timeLines = hourly ? byHour.data : byDay.data;

  const rows: Record<View, Row[]> = {
    // Empty hours would fill the table with zeros; the chart still shows them.
    time: (timeLines ?? [])
      .filter((line) => !hourly || line.requests > 0)
      .map((line) => ({ label: hourly ? fmt.hour(Number(line.group)) : fmt.day(line.group), line })),
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
  return (
    <>
      <h1>{t("usage.title")}</h1>
      <RangeToolbar
        dates={dates}
        onDates={setDates}
        granularity={granularity}
        onGranularity={setGranularity}
        badRange={range === null}
        hoursAllowed={hoursAllowed}
      />
      <ErrorText error={byDay.error ?? byHour.error ?? byModel.error ?? byKey.error} />
      <UsageTotals sum={totals(byModel.data ?? [])} />
      <UsageCharts lines={timeLines} hourly={hourly} />
      <section className="card" aria-labelledby="table-title">
        <h2 id="table-title">{t("usage.tableTitle")}</h2>
        <p className="muted small">{t("usage.tokenSources")}</p>
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
