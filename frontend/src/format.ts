//! Every number, duration and time the dashboard shows goes through here (Intl, in the UI's
//! language), so English and Chinese pages format alike.

import i18n from "./i18n";

function locale(): string {
  return i18n.resolvedLanguage ?? i18n.language ?? "en";
}

const cache = new Map<string, Intl.NumberFormat | Intl.DateTimeFormat>();

function numberFormat(options: Intl.NumberFormatOptions): Intl.NumberFormat {
  const key = `n|${locale()}|${JSON.stringify(options)}`;
  let format = cache.get(key);
  if (!(format instanceof Intl.NumberFormat)) {
    format = new Intl.NumberFormat(locale(), options);
    cache.set(key, format);
  }
  return format;
}

function dateFormat(options: Intl.DateTimeFormatOptions): Intl.DateTimeFormat {
  const key = `d|${locale()}|${JSON.stringify(options)}`;
  let format = cache.get(key);
  if (!(format instanceof Intl.DateTimeFormat)) {
    format = new Intl.DateTimeFormat(locale(), options);
    cache.set(key, format);
  }
  return format;
}

export const fmt = {
  /** A count: 12,345. */
  integer: (value: number) => numberFormat({ maximumFractionDigits: 0 }).format(value),
  /** A rate or measure with at most `digits` decimals. */
  decimal: (value: number, digits = 1) => numberFormat({ maximumFractionDigits: digits, minimumFractionDigits: 0 }).format(value),
  /** A share 0..1 as a percentage. */
  percent: (share: number) => numberFormat({ style: "percent", maximumFractionDigits: 1 }).format(share),
  /** Milliseconds, with a unit: "12.3 ms", "1.2 s". */
  millis: (ms: number) =>
    ms >= 1000
      ? numberFormat({ style: "unit", unit: "second", maximumFractionDigits: 2 }).format(ms / 1000)
      : numberFormat({ style: "unit", unit: "millisecond", maximumFractionDigits: 1 }).format(ms),
  /** A length of time in seconds: "3 h 12 min". */
  duration: (secs: number) => {
    const units: [Intl.NumberFormatOptions["unit"], number][] = [
      ["day", 86_400],
      ["hour", 3_600],
      ["minute", 60],
      ["second", 1],
    ];
    const parts: string[] = [];
    let rest = Math.max(0, Math.floor(secs));
    for (const [unit, size] of units) {
      const count = Math.floor(rest / size);
      rest -= count * size;
      if (count > 0 || (parts.length === 0 && size === 1)) {
        parts.push(numberFormat({ style: "unit", unit, unitDisplay: "short" }).format(count));
      }
      if (parts.length === 2) break;
    }
    return parts.join(" ");
  },
  /** A moment (Unix ms) with date and minutes. */
  dateTime: (ms: number) => dateFormat({ dateStyle: "medium", timeStyle: "short" }).format(ms),
  /** A day (Unix ms or YYYY-MM-DD, UTC as the gateway groups). */
  day: (value: number | string) =>
    dateFormat({ dateStyle: "medium", timeZone: "UTC" }).format(
      typeof value === "string" ? Date.parse(`${value}T00:00:00Z`) : value,
    ),
  /** An hour (Unix ms) in local time. */
  hour: (ms: number) => dateFormat({ month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }).format(ms),
};
