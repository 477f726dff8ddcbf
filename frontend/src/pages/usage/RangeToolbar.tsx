//! The usage page's date range, presets, time step and refresh.

import { useTranslation } from "react-i18next";
import { MAX_HOURS, useRefreshUsage, type Granularity } from "../../api/usage";
import { lastDays } from "./range";

export interface Dates {
  from: string;
  to: string;
}

interface Props {
  dates: Dates;
  onDates: (dates: Dates) => void;
  granularity: Granularity;
  onGranularity: (granularity: Granularity) => void;
  badRange: boolean;
  hoursAllowed: boolean;
}

export function RangeToolbar({ dates, onDates, granularity, onGranularity, badRange, hoursAllowed }: Props) {
  const { t } = useTranslation();
  const refresh = useRefreshUsage();
  return (
    <form className="card toolbar" aria-label={t("usage.rangeLabel")} onSubmit={(e) => e.preventDefault()}>
      <label>
        {t("usage.from")}
        <input type="date" value={dates.from} max={dates.to} onChange={(e) => onDates({ ...dates, from: e.target.value })} />
      </label>
      <label>
        {t("usage.to")}
        <input type="date" value={dates.to} min={dates.from} onChange={(e) => onDates({ ...dates, to: e.target.value })} />
      </label>
      <div role="group" aria-label={t("usage.presets")} className="presets">
        {[1, 7, 30].map((days) => (
          <button type="button" key={days} onClick={() => onDates(lastDays(days))}>
            {t("usage.lastDays", { count: days })}
          </button>
        ))}
      </div>
      <label>
        {t("usage.granularity")}
        <select value={granularity} onChange={(e) => onGranularity(e.target.value === "hour" ? "hour" : "day")}>
          <option value="day">{t("usage.perDay")}</option>
          <option value="hour">{t("usage.perHour")}</option>
        </select>
      </label>
      <button type="button" onClick={() => void refresh()}>
        {t("usage.refresh")}
      </button>
      {badRange ? (
        <p role="alert" className="error">
          {t("usage.badRange")}
        </p>
      ) : null}
      {granularity === "hour" && !hoursAllowed ? (
        <p role="status" className="notice">
          {t("usage.hourLimit", { hours: MAX_HOURS })}
        </p>
      ) : null}
    </form>
  );
}
