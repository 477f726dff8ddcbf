//! Date-range helpers for the usage page (local calendar days, `to` exclusive).

import type { UsageRange } from "../../api/usage";

const DAY_MS = 86_400_000;

/** `YYYY-MM-DD` of a moment in local time, as `<input type="date">` wants it. */
export function dateInput(ms: number): string {
  const date = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** The local-midnight start of a `YYYY-MM-DD`, or null. */
export function dayStart(text: string): number | null {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (!match) return null;
  return new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3])).getTime();
}

/** From the start of the first day to the end of the last (inclusive days). */
export function rangeOf(fromText: string, toText: string): UsageRange | null {
  const from = dayStart(fromText);
  const to = dayStart(toText);
  if (from === null || to === null || to < from) return null;
  return { from, to: to + DAY_MS };
}

export function lastDays(days: number, now = Date.now()): { from: string; to: string } {
  return { from: dateInput(now - (days - 1) * DAY_MS), to: dateInput(now) };
}
