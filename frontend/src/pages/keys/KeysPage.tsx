//! API keys: the list with limits, budget and status; create, edit limits, revoke.

import { useMemo, useState } from "react";
import { useTranslation } from "react-i18next";
import { keyStatus, useKeys, useRevokeKey, type Key } from "../../api/keys";
import { useUsage } from "../../api/usage";
import { ConfirmDialog } from "../../components/ConfirmDialog";
import { ErrorText } from "../../components/ErrorText";
import { fmt } from "../../format";
import { CreateKeyForm } from "./CreateKeyForm";
import { EditKeyForm } from "./EditKeyForm";

function Limits({ item }: { item: Key }) {
  const { t } = useTranslation();
  const parts = [
    item.rpm !== null ? t("keys.rpmValue", { value: fmt.integer(item.rpm) }) : null,
    item.tpm !== null ? t("keys.tpmValue", { value: fmt.integer(item.tpm) }) : null,
    item.max_concurrency !== null ? t("keys.concurrencyValue", { value: fmt.integer(item.max_concurrency) }) : null,
    item.allowed_models ? t("keys.modelsValue", { value: item.allowed_models.join(", ") }) : null,
  ].filter((part) => part !== null);
  return <>{parts.length ? parts.join(" · ") : <span className="muted">{t("keys.noLimits")}</span>}</>;
}

function Budget({ item, used }: { item: Key; used: number }) {
  const { t } = useTranslation();
  if (item.token_budget === null) return <>{t("keys.budgetUsedOnly", { used: fmt.integer(used) })}</>;
  const remaining = Math.max(0, item.token_budget - used);
  return (
    <>
      {t("keys.budgetValue", { used: fmt.integer(used), budget: fmt.integer(item.token_budget) })}
      <br />
      <span className="muted small">{t("keys.budgetRemaining", { remaining: fmt.integer(remaining) })}</span>
    </>
  );
}

interface KeyRowProps {
  item: Key;
  used: number;
  onEdit: () => void;
  onRevoke: () => void;
}

function KeyRow({ item, used, onEdit, onRevoke }: KeyRowProps) {
  const { t } = useTranslation();
  const status = keyStatus(item);
  return (
    <tr>
      <th scope="row">{item.name}</th>
      <td>{item.owner ?? "—"}</td>
      <td className="mono">{item.prefix}</td>
      <td>
        <Limits item={item} />
      </td>
      <td>
        <Budget item={item} used={used} />
      </td>
      <td>{fmt.dateTime(item.created_at)}</td>
      <td>{item.expires_at === null ? t("keys.never") : fmt.dateTime(item.expires_at)}</td>
      <td>
        <span className={`pill status-${status}`}>{t(`keys.statuses.${status}`)}</span>
      </td>
      <td>
        <div className="row-actions">
          {status !== "revoked" ? (
            <>
              <button type="button" onClick={onEdit} aria-label={t("keys.editNamed", { name: item.name })}>
                {t("keys.edit")}
              </button>
              <button type="button" className="danger" onClick={onRevoke} aria-label={t("keys.revokeNamed", { name: item.name })}>
                {t("keys.revoke")}
              </button>
            </>
          ) : null}
        </div>
      </td>
    </tr>
  );
}

export function KeysPage() {
  const { t } = useTranslation();
  const keys = useKeys();
  const revoke = useRevokeKey();
  // Tokens each key has used, over all time: what a budget is measured against.
  const [allTime] = useState(() => ({ from: 0, to: Date.now() + 86_400_000 }));
  const usage = useUsage(allTime, "key");
  const used = useMemo(() => new Map((usage.data ?? []).map((line) => [line.group, line.total_tokens])), [usage.data]);
  const [editing, setEditing] = useState<Key | null>(null);
  const [revoking, setRevoking] = useState<Key | null>(null);
  return (
    <>
      <h1>{t("keys.title")}</h1>
      {editing ? <EditKeyForm key={editing.id} target={editing} onDone={() => setEditing(null)} /> : <CreateKeyForm />}
      <section className="card" aria-labelledby="list-title">
        <h2 id="list-title">{t("keys.listTitle")}</h2>
        <ErrorText error={keys.error} />
        <ErrorText error={revoke.error} />
        {keys.isPending ? <p>{t("common.loading")}</p> : null}
        {keys.data?.length === 0 ? <p>{t("keys.empty")}</p> : null}
        {keys.data?.length ? (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">{t("keys.fields.name")}</th>
                  <th scope="col">{t("keys.fields.owner")}</th>
                  <th scope="col">{t("keys.prefix")}</th>
                  <th scope="col">{t("keys.limits")}</th>
                  <th scope="col">{t("keys.budget")}</th>
                  <th scope="col">{t("keys.created")}</th>
                  <th scope="col">{t("keys.expires")}</th>
                  <th scope="col">{t("keys.status")}</th>
                  <th scope="col">{t("keys.actions")}</th>
                </tr>
              </thead>
              <tbody>
                {keys.data.map((item) => (
                  <KeyRow
                    key={item.id}
                    item={item}
                    used={used.get(String(item.id)) ?? 0}
                    onEdit={() => setEditing(item)}
                    onRevoke={() => setRevoking(item)}
                  />
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
      </section>
      {revoking ? (
        <ConfirmDialog
          title={t("keys.revokeTitle", { name: revoking.name })}
          confirmLabel={t("keys.revokeConfirm")}
          busy={revoke.isPending}
          onCancel={() => setRevoking(null)}
          onConfirm={() => revoke.mutate(revoking.id, { onSettled: () => setRevoking(null) })}
        >
          <p>{t("keys.revokeWarning", { prefix: revoking.prefix })}</p>
        </ConfirmDialog>
      ) : null}
    </>
  );
}
