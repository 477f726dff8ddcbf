//! Live counters from `GET /admin/overview`, refreshed every few seconds, with a short history
//! of requests per second kept in the page.

import { useEffect, useMemo, useState } from "react";
import { useTranslation } from "react-i18next";
import { useOverview, type Overview } from "../../api/overview";
import { ErrorText } from "../../components/ErrorText";
import { StatCard } from "../../components/StatCard";
import { TimeChart } from "../../components/TimeChart";
import { fmt } from "../../format";

const HISTORY = 60;

function UpstreamHealth({ upstreams }: { upstreams: Overview["upstreams"] }) {
  const { t } = useTranslation();
  const states = ["eligible", "pending", "unhealthy", "ejected", "draining"] as const;
  return (
    <section aria-labelledby="health-title" className="card">
      <h2 id="health-title">{t("overview.upstreamHealth")}</h2>
      <p>
        {t("overview.servicesEndpoints", {
          services: fmt.integer(upstreams.services),
          endpoints: fmt.integer(upstreams.endpoints),
        })}
      </p>
      <ul className="pills">
        {states.map((state) => (
          <li key={state} className={`pill state-${state}`}>
            {t(`states.${state}`)}: <strong>{fmt.integer(upstreams[state])}</strong>
          </li>
        ))}
      </ul>
    </section>
  );
}

export function OverviewPage() {
  const { t } = useTranslation();
  const overview = useOverview();
  const [history, setHistory] = useState<{ at: number; rps: number; tpm: number }[]>([]);
  const data = overview.data;
  useEffect(() => {
    if (!data) return;
    setHistory((past) =>
      [...past, { at: Date.now() / 1000, rps: data.requests_per_second, tpm: data.tokens_per_minute }].slice(-HISTORY),
    );
  }, [data]);
  const chart = useMemo(
    () => ({
      times: history.map((h) => h.at),
      series: [{ label: t("overview.rps"), values: history.map((h) => h.rps), color: "#2563eb" }],
    }),
    [history, t],
  );
  return (
    <>
      <h1>{t("overview.title")}</h1>
      <p className="muted" aria-live="polite">
        {data
          ? t("overview.window", { secs: fmt.integer(data.window_secs), uptime: fmt.duration(data.uptime_secs) })
          : overview.isPending
            ? t("common.loading")
            : null}
      </p>
      <ErrorText error={overview.error} />
      {data ? (
        <>
          <div className="stats">
            <StatCard label={t("overview.rps")} value={fmt.decimal(data.requests_per_second, 2)} />
            <StatCard label={t("overview.errorRate")} value={fmt.percent(data.error_rate)} />
            <StatCard
              label={t("overview.latency")}
              value={`${fmt.millis(data.latency_ms.p50)} / ${fmt.millis(data.latency_ms.p99)}`}
              hint={t("overview.p50p99")}
            />
            <StatCard
              label={t("overview.overhead")}
              value={`${fmt.millis(data.overhead_ms.p50)} / ${fmt.millis(data.overhead_ms.p99)}`}
              hint={t("overview.p50p99")}
            />
            <StatCard label={t("overview.tpm")} value={fmt.integer(data.tokens_per_minute)} />
            <StatCard label={t("overview.streams")} value={fmt.integer(data.active_streams)} />
            <StatCard label={t("overview.wsSessions")} value={fmt.integer(data.websocket_sessions)} />
          </div>
          <UpstreamHealth upstreams={data.upstreams} />
          {history.length > 1 ? (
            <section className="card" aria-labelledby="rps-title">
              <h2 id="rps-title">{t("overview.rpsHistory")}</h2>
              <TimeChart label={t("overview.rpsHistory")} times={chart.times} series={chart.series} height={160} />
            </section>
          ) : null}
        </>
      ) : null}
    </>
  );
}
