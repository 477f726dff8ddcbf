//! A time-series chart (uPlot: ~20 KB gzipped, canvas, draws thousands of points in a frame).
//! The same numbers are always in a table beside it, so the chart is decoration for readers of
//! the table: it is labelled and hidden from the accessibility tree's details.

import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  label: string;
  values: number[];
  color: string;
}

interface Props {
  label: string;
  /** x values in Unix seconds. */
  times: number[];
  series: Series[];
  height?: number;
  bars?: boolean;
}

export function TimeChart({ label, times, series, height = 220, bars = false }: Props) {
  const container = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = container.current;
    // Without layout (jsdom in unit tests) there is nothing to draw into; the table still shows.
    if (!element || typeof ResizeObserver === "undefined") return;
    const barPaths = bars ? uPlot.paths.bars?.({ size: [0.6, 40] }) : undefined;
    const options: uPlot.Options = {
      width: Math.max(element.clientWidth, 300),
      height,
      legend: { show: true },
      scales: { x: { time: true } },
      axes: [{}, { size: 60 }],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          fill: `${s.color}33`,
          width: 2,
          ...(barPaths ? { paths: barPaths } : {}),
        })),
      ],
    };
    const plot = new uPlot(options, [times, ...series.map((s) => s.values)], element);
    const observer = new ResizeObserver(() => plot.setSize({ width: Math.max(element.clientWidth, 300), height }));
    observer.observe(element);
    return () => {
      observer.disconnect();
      plot.destroy();
    };
  }, [times, series, height, bars]);
  return <div ref={container} className="chart" role="img" aria-label={label} />;
}
