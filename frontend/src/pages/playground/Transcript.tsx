//! The conversation as it streams: turns, the last answer's numbers, errors in words.

import { useTranslation } from "react-i18next";
import { fmt } from "../../format";
import type { useChat } from "../../ws/useChat";

type Chat = ReturnType<typeof useChat>;

function Stats({ stats }: { stats: NonNullable<Chat["stats"]> }) {
  const { t } = useTranslation();
  const dash = "—";
  return (
    <dl className="run-stats" aria-label={t("playground.stats")}>
      <div>
        <dt>{t("playground.firstToken")}</dt>
        <dd>{stats.firstTokenMs === null ? dash : fmt.millis(stats.firstTokenMs)}</dd>
      </div>
      <div>
        <dt>{t("playground.tokensPerSecond")}</dt>
        <dd>{stats.tokensPerSecond === null ? dash : fmt.decimal(stats.tokensPerSecond, 1)}</dd>
      </div>
      <div>
        <dt>{t("playground.usage")}</dt>
        <dd>
          {stats.usage
            ? t("playground.usageValue", {
                prompt: fmt.integer(stats.usage.prompt_tokens),
                completion: fmt.integer(stats.usage.completion_tokens),
                total: fmt.integer(stats.usage.total_tokens),
              })
            : dash}
        </dd>
      </div>
    </dl>
  );
}

export function Transcript({ chat }: { chat: Chat }) {
  const { t } = useTranslation();
  const busy = chat.status !== "idle";
  return (
    <>
      <ol className="turns" aria-label={t("playground.messages")} aria-live="polite" aria-busy={busy}>
        {chat.turns.map((turn, index) => (
          <li key={index} className={`turn turn-${turn.role}`}>
            <span className="turn-role">{t(`playground.roles.${turn.role}`)}</span>
            <div className="turn-text" data-testid={turn.role === "assistant" ? "reply" : undefined}>
              {turn.content}
              {turn.cancelled ? <em className="muted"> {t("playground.stopped")}</em> : null}
            </div>
          </li>
        ))}
      </ol>
      {chat.failure ? (
        <p className="error" role="alert">
          {chat.failure.status
            ? t("playground.errorWithStatus", {
                status: chat.failure.status,
                code: chat.failure.error.code ?? "",
                message: chat.failure.error.message,
              })
            : chat.failure.error.message}
        </p>
      ) : null}
      <p role="status" className="muted small">
        {chat.status === "connecting"
          ? t("playground.connecting")
          : chat.status === "streaming"
            ? t("playground.streaming")
            : chat.status === "stopping"
              ? t("playground.stopping")
              : ""}
      </p>
      {chat.stats ? <Stats stats={chat.stats} /> : null}
    </>
  );
}
