//! Creating a key; its secret is shown once, with a copy button and a warning.

import { useState, type FormEvent } from "react";
import { useTranslation } from "react-i18next";
import { useCreateKey, type CreatedKey } from "../../api/keys";
import { CopyButton } from "../../components/CopyButton";
import { ErrorText } from "../../components/ErrorText";
import { KeyFieldsInputs } from "./KeyFieldsInputs";
import { checkFields, createInput, emptyFields, type FieldProblem, type KeyFields } from "./keyForm";

function SecretPanel({ created, onDismiss }: { created: CreatedKey; onDismiss: () => void }) {
  const { t } = useTranslation();
  return (
    <section className="card secret" aria-labelledby="secret-title">
      <h2 id="secret-title">{t("keys.secretTitle", { name: created.name })}</h2>
      <p role="alert" className="warning">
        {t("keys.secretWarning")}
      </p>
      <label>
        {t("keys.secretLabel")}
        <input readOnly value={created.key} onFocus={(event) => event.target.select()} className="mono" />
      </label>
      <div className="actions">
        <CopyButton text={created.key} />
        <button type="button" onClick={onDismiss}>
          {t("keys.secretDone")}
        </button>
      </div>
    </section>
  );
}

export function CreateKeyForm() {
  const { t } = useTranslation();
  const create = useCreateKey();
  const [fields, setFields] = useState<KeyFields>(emptyFields);
  const [problem, setProblem] = useState<FieldProblem | null>(null);
  const [created, setCreated] = useState<CreatedKey | null>(null);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = checkFields(fields, true);
    setProblem(found);
    if (found) return;
    create.mutate(createInput(fields), {
      onSuccess: (key) => {
        setCreated(key);
        setFields(emptyFields);
      },
    });
  };
  if (created) return <SecretPanel created={created} onDismiss={() => setCreated(null)} />;
  return (
    <form className="card" onSubmit={submit} aria-labelledby="create-title" noValidate>
      <h2 id="create-title">{t("keys.createTitle")}</h2>
      <KeyFieldsInputs fields={fields} onChange={setFields} creating invalid={problem?.field} />
      {problem ? (
        <p className="error" role="alert">
          {t(problem.message, { field: t(`keys.fields.${problem.field}`) })}
        </p>
      ) : null}
      <ErrorText error={create.error} />
      <button type="submit" className="primary" disabled={create.isPending}>
        {t("keys.create")}
      </button>
    </form>
  );
}
