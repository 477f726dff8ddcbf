//! Turning the key forms' text fields into the admin API's JSON (pure, unit-tested).

import type { CreateKeyInput, Key, KeyLimitsPatch } from "../../api/keys";

export interface KeyFields {
  name: string;
  owner: string;
  rpm: string;
  tpm: string;
  token_budget: string;
  max_concurrency: string;
  allowed_models: string;
  expires_in_days: string;
  /** `datetime-local` text, in the browser's time zone. */
  expires_at: string;
}

export const emptyFields: KeyFields = {
  name: "",
  owner: "",
  rpm: "",
  tpm: "",
  token_budget: "",
  max_concurrency: "",
  allowed_models: "",
  expires_in_days: "",
  expires_at: "",
};

export type NumberField = "rpm" | "tpm" | "token_budget" | "max_concurrency" | "expires_in_days";

/** A field's whole number, null when blank, NaN when not a whole number (the API will say why). */
export function wholeNumber(text: string): number | null {
  const trimmed = text.trim();
  if (trimmed === "") return null;
  return /^-?\d+$/.test(trimmed) ? Number(trimmed) : Number.NaN;
}

export function modelList(text: string): string[] | null {
  const models = text
    .split(/[,\n]/)
    .map((model) => model.trim())
    .filter((model) => model !== "");
  return models.length === 0 ? null : models;
}

/** A problem found before asking the gateway: the field and a translation key. */
export interface FieldProblem {
  field: keyof KeyFields;
  message: "keys.errors.wholeNumber" | "keys.errors.nameRequired" | "keys.errors.oneExpiry" | "keys.errors.badDate";
}

export function checkFields(fields: KeyFields, creating: boolean): FieldProblem | null {
  if (creating && fields.name.trim() === "") return { field: "name", message: "keys.errors.nameRequired" };
  const numbers: NumberField[] = ["rpm", "tpm", "token_budget", "max_concurrency", "expires_in_days"];
  for (const field of numbers) {
    if (Number.isNaN(wholeNumber(fields[field]))) return { field, message: "keys.errors.wholeNumber" };
  }
  if (fields.expires_at.trim() !== "" && Number.isNaN(Date.parse(fields.expires_at))) {
    return { field: "expires_at", message: "keys.errors.badDate" };
  }
  if (creating && fields.expires_at.trim() !== "" && fields.expires_in_days.trim() !== "") {
    return { field: "expires_in_days", message: "keys.errors.oneExpiry" };
  }
  return null;
}

export function createInput(fields: KeyFields): CreateKeyInput {
  const input: CreateKeyInput = { name: fields.name.trim() };
  if (fields.owner.trim()) input.owner = fields.owner.trim();
  for (const field of ["rpm", "tpm", "token_budget", "max_concurrency", "expires_in_days"] as const) {
    const value = wholeNumber(fields[field]);
    if (value !== null) input[field] = value;
  }
  const models = modelList(fields.allowed_models);
  if (models) input.allowed_models = models;
  if (fields.expires_at.trim()) input.expires_at = Date.parse(fields.expires_at);
  return input;
}

/** Every limit field of the edit form: blank clears the limit (`null`). */
export function limitsPatch(fields: KeyFields): KeyLimitsPatch {
  const patch: KeyLimitsPatch = {
    rpm: wholeNumber(fields.rpm),
    tpm: wholeNumber(fields.tpm),
    token_budget: wholeNumber(fields.token_budget),
    max_concurrency: wholeNumber(fields.max_concurrency),
    allowed_models: modelList(fields.allowed_models),
    expires_at: fields.expires_at.trim() ? Date.parse(fields.expires_at) : null,
  };
  if (fields.name.trim()) patch.name = fields.name.trim();
  return patch;
}

function localDateTime(ms: number): string {
  const date = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return date.toISOString().slice(0, 16);
}

export function fieldsOf(key: Key): KeyFields {
  const text = (value: number | null) => (value === null ? "" : String(value));
  return {
    ...emptyFields,
    name: key.name,
    owner: key.owner ?? "",
    rpm: text(key.rpm),
    tpm: text(key.tpm),
    token_budget: text(key.token_budget),
    max_concurrency: text(key.max_concurrency),
    allowed_models: (key.allowed_models ?? []).join(", "),
    expires_at: key.expires_at === null ? "" : localDateTime(key.expires_at),
  };
}
