//! The limit fields shared by the create and edit forms.

import { useTranslation } from "react-i18next";
import type { KeyFields } from "./keyForm";

interface Props {
  fields: KeyFields;
  onChange: (fields: KeyFields) => void;
  creating: boolean;
  invalid?: keyof KeyFields | undefined;
}

export function KeyFieldsInputs({ fields, onChange, creating, invalid }: Props) {
  const { t } = useTranslation();
  const input = (field: keyof KeyFields, props: { type?: string; inputMode?: "numeric"; placeholder?: string } = {}) => (
    <label key={field}>
      {t(`keys.fields.${field}`)}
      <input
        name={field}
        value={fields[field]}
        aria-invalid={invalid === field ? true : undefined}
        onChange={(event) => onChange({ ...fields, [field]: event.target.value })}
        {...props}
      />
    </label>
  );
  const number = { inputMode: "numeric" as const, placeholder: t("keys.unlimited") };
  return (
    <div className="form-grid">
      {input("name", creating ? {} : { placeholder: fields.name })}
      {creating ? input("owner") : null}
      {input("rpm", number)}
      {input("tpm", number)}
      {input("token_budget", number)}
      {input("max_concurrency", number)}
      {input("allowed_models", { placeholder: t("keys.anyModel") })}
      {creating ? input("expires_in_days", { inputMode: "numeric", placeholder: t("keys.never") }) : null}
      {input("expires_at", { type: "datetime-local" })}
    </div>
  );
}
