//! The usage table (whatever grouping is shown) with its CSV export.

import { useTranslation } from "react-i18next";
import type { UsageLine } from "../../api/usage";
import { fmt } from "../../format";
import { downloadCsv, toCsv } from "./csv";

export interface Row {
  label: string;
  line: UsageLine;
}

const COLUMNS = [
  "requests",
  "prompt_tokens",
  "completion_tokens",
  "total_tokens",
  "reported_requests",
  "estimated_requests",
  "cached_requests",
] as const;

function value(line: UsageLine, column: (typeof COLUMNS)[number]): number {
  return column === "reported_requests" ? line.requests - line.estimated_requests : line[column];
}

export function UsageTable({
  caption,
  groupLabel,
  rows,
  filename,
}: {
  caption: string;
  groupLabel: string;
  rows: Row[];
  filename: string;
}) {
  const { t } = useTranslation();
  const exportCsv = () =>
    downloadCsv(
      filename,
      toCsv(
        [groupLabel, ...COLUMNS.map((column) => t(`usage.columns.${column}`))],
        rows.map((row) => [row.label, ...COLUMNS.map((column) => value(row.line, column))]),
      ),
    );
  return (
    <>
      <div className="table-tools">
        <button type="button" onClick={exportCsv} disabled={rows.length === 0}>
          {t("usage.exportCsv")}
        </button>
      </div>
      <div className="table-wrap">
        <table>
          <caption>{caption}</caption>
          <thead>
            <tr>
              <th scope="col">{groupLabel}</th>
              {COLUMNS.map((column) => (
                <th scope="col" className="num" key={column}>
                  {t(`usage.columns.${column}`)}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={row.label}>
                <th scope="row">{row.label}</th>
                {COLUMNS.map((column) => (
                  <td className="num" key={column}>
                    {fmt.integer(value(row.line, column))}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {rows.length === 0 ? <p className="muted">{t("usage.empty")}</p> : null}
    </>
  );
}
