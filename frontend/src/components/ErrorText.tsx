//! An API error in words, announced to screen readers.

import { useTranslation } from "react-i18next";
import { ApiError } from "../api/client";

export function errorWords(error: unknown, t: (key: string, options?: Record<string, unknown>) => string): string {
  if (error instanceof ApiError) {
    if (error.status === 0) return t("errors.network");
    // Name the field unless the gateway's message already does.
    const field = error.param && !error.message.includes(error.param) ? t("errors.field", { field: error.param }) : "";
    return `${field}${error.message}`;
  }
  if (error instanceof Error) return error.message;
  return t("errors.unknown");
}

export function ErrorText({ error }: { error: unknown }) {
  const { t } = useTranslation();
  if (!error) return null;
  return (
    <p className="error" role="alert">
      {errorWords(error, t)}
    </p>
  );
}
