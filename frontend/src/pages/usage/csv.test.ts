import { describe, expect, it } from "vitest";
import { toCsv } from "./csv";
import { dayStart, lastDays, rangeOf } from "./range";

describe("CSV", () => {
  it("quotes what needs quoting and defuses formulas", () => {
    expect(
      toCsv(
        ["Model", "Requests"],
        [
          ["echo", 3],
          ['a,"b"', 1],
          ["=cmd()", 2],
        ],
      ),
    ).toBe('Model,Requests\r\necho,3\r\n"a,""b""",1\r\n\'=cmd(),2\r\n');
    expect(toCsv(["n"], [[-5]])).toBe("n\r\n-5\r\n");
  });
});

describe("date ranges", () => {
  it("covers whole local days, end inclusive", () => {
    const range = rangeOf("2026-03-01", "2026-03-02");
    expect(range).toEqual({ from: new Date(2026, 2, 1).getTime(), to: new Date(2026, 2, 1).getTime() + 2 * 86_400_000 });
    expect(rangeOf("2026-03-02", "2026-03-01")).toBeNull();
    expect(dayStart("03/01/2026")).toBeNull();
  });

  it("offers the last N days ending today", () => {
    const now = new Date(2026, 0, 10, 15).getTime();
    expect(lastDays(7, now)).toEqual({ from: "2026-01-04", to: "2026-01-10" });
    expect(lastDays(1, now)).toEqual({ from: "2026-01-10", to: "2026-01-10" });
  });
});
