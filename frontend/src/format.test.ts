import { afterEach, describe, expect, it } from "vitest";
import { fmt } from "./format";
import i18n from "./i18n";
import { en } from "./i18n/en";
import { zhCN } from "./i18n/zh-CN";

afterEach(async () => {
  await i18n.changeLanguage("en");
});

function keys(value: object, prefix = ""): string[] {
  return Object.entries(value).flatMap(([key, child]) =>
    typeof child === "string" ? [`${prefix}${key}`] : keys(child as object, `${prefix}${key}.`),
  );
}

describe("formatting follows the language", () => {
  it("formats numbers, shares and durations in English", async () => {
    await i18n.changeLanguage("en");
    expect(fmt.integer(12345.6)).toBe("12,346");
    expect(fmt.percent(0.125)).toBe("12.5%");
    expect(fmt.millis(12.34)).toBe("12.3 ms");
    expect(fmt.millis(1500)).toBe("1.5 sec");
    expect(fmt.duration(3725)).toBe("1 hr 2 min");
    expect(fmt.day("2026-03-01")).toBe("Mar 1, 2026");
  });

  it("formats in Chinese after switching", async () => {
    await i18n.changeLanguage("zh-CN");
    expect(fmt.day("2026-03-01")).toBe("2026年3月1日");
    expect(fmt.duration(90)).toBe("1分钟 30秒");
  });
});

describe("translations", () => {
  it("has the same keys in English and Chinese, none left empty", () => {
    expect(keys(zhCN).sort()).toEqual(keys(en).sort());
    expect(keys(zhCN).filter((key) => key.trim() === "")).toEqual([]);
  });

  it("shows Chinese text after switching to zh-CN", async () => {
    await i18n.changeLanguage("zh-CN");
    expect(i18n.t("nav.keys")).toBe("密钥");
    expect(i18n.t("usage.lastDays", { count: 7 })).toBe("最近 7 天");
  });

  it("reads any Chinese browser language as zh-CN", async () => {
    await i18n.changeLanguage("zh");
    expect(i18n.resolvedLanguage).toBe("zh-CN");
    await i18n.changeLanguage("en-GB");
    expect(i18n.resolvedLanguage).toBe("en");
  });
});
