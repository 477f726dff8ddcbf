//! i18next with English and Simplified Chinese; the first visit follows the browser's language,
//! a choice made in the switch is remembered in localStorage.

import i18n from "i18next";
import LanguageDetector from "i18next-browser-languagedetector";
import { initReactI18next } from "react-i18next";
import { en } from "./en";
import { zhCN } from "./zh-CN";

export const LANGUAGES = [
  { code: "en", name: "English" },
  { code: "zh-CN", name: "简体中文" },
] as const;

void i18n
  .use(LanguageDetector)
  .use(initReactI18next)
  .init({
    resources: { en: { translation: en }, "zh-CN": { translation: zhCN } },
    fallbackLng: { zh: ["zh-CN"], default: ["en"] },
    supportedLngs: ["en", "zh-CN"],
    load: "currentOnly",
    interpolation: { escapeValue: false },
    detection: {
      order: ["localStorage", "navigator"],
      lookupLocalStorage: "aigw.language",
      caches: ["localStorage"],
      // zh, zh-Hans, zh-SG… read Simplified Chinese; every other language English.
      convertDetectedLanguage: (language: string) => (language.toLowerCase().startsWith("zh") ? "zh-CN" : language),
    },
    react: { useSuspense: false },
  });

i18n.on("languageChanged", (language) => {
  document.documentElement.lang = language;
});

export default i18n;
