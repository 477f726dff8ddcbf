//! Editing a key's name and limits; a blank limit is cleared.

import { useState, type FormEvent } from "react";
import { useTranslation } from "react-i18next";
import { useUpdateKey, type Key } from "../../api/keys";
import { ErrorText } from "../../components/ErrorText";
import { KeyFieldsInputs } from "./KeyFieldsInputs";
import { checkFields, fieldsOf, limitsPatch, type FieldProblem, type KeyFields } from "./keyForm";

export function EditKeyForm({ target, onDone }: { target: Key; onDone: () => void }) {
  const { t } = useTranslation();
  const update = useUpdateKey();
  const [fields, setFields] = useState<KeyFields>(() => fieldsOf(target));
  const [problem, setProblem] = useState<FieldProblem | null>(null);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = checkFields(fields, false);
    setProblem(found);
    if (found) return;
    update.mutate({ id: target.id, patch: limitsPatch(fields) }, { onSuccess: onDone });
  };
  return (
    <form className="card" onSubmit={submit} aria-labelledby="edit-title" noValidate>
      <h2 id="edit-title">{t("keys.editTitle", { name: target.name })}</h2>
      <p className="muted">{t("keys.editHint")}</p>
      <KeyFieldsInputs fields={fields} onChange={setFields} creating={false} invalid={problem?.field} />
      {problem ? (
        <p className="error" role="alert">
          {t(problem.message, { field: t(`keys.fields.${problem.field}`) })}
        </p>
      ) : null}
      <ErrorText error={update.error} />
      <div className="actions">
        <button type="submit" className="primary" disabled={update.isPending}>
          {t("keys.save")}
        </button>
        <button type="button" onClick={onDone}>
          {t("common.cancel")}
        </button>
      </div>
    </form>
  );
}
