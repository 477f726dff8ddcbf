//! Chat with any model over `GET /v1/ws`, as the signed-in admin or with a pasted API key.

import { useState, type FormEvent } from "react";
import { useTranslation } from "react-i18next";
import { useModels } from "../../api/models";
import type { Session } from "../../api/session";
import { ErrorText } from "../../components/ErrorText";
import type { ChatSocketDeps } from "../../ws/chatSocket";
import { useChat } from "../../ws/useChat";
import { Transcript } from "./Transcript";

type Mode = "session" | "key";

interface CredentialProps {
  mode: Mode;
  onMode: (mode: Mode) => void;
  canUseSession: boolean;
  pastedKey: string;
  onPastedKey: (key: string) => void;
}

function CredentialPicker({ mode, onMode, canUseSession, pastedKey, onPastedKey }: CredentialProps) {
  const { t } = useTranslation();
  return (
    <section className="card" aria-labelledby="credential-title">
      <h2 id="credential-title">{t("playground.credential")}</h2>
      <div role="radiogroup" aria-label={t("playground.credential")} className="segmented">
        <label>
          <input
            type="radio"
            name="mode"
            checked={mode === "session"}
            disabled={!canUseSession}
            onChange={() => onMode("session")}
          />
          {t("playground.useSession")}
        </label>
        <label>
          <input type="radio" name="mode" checked={mode === "key"} onChange={() => onMode("key")} />
          {t("playground.useKey")}
        </label>
      </div>
      {!canUseSession ? <p className="muted">{t("playground.viewerHint")}</p> : null}
      {mode === "key" ? (
        <label>
          {t("playground.apiKey")}
          <input
            type="password"
            autoComplete="off"
            className="mono"
            value={pastedKey}
            onChange={(e) => onPastedKey(e.target.value)}
            placeholder="sk-gw-…"
          />
        </label>
      ) : null}
      <p className="muted small">{t("playground.ticketNote")}</p>
    </section>
  );
}

interface Props {
  session: Session;
  /** How the socket is made; the browser's WebSocket unless a test provides one. */
  chatDeps?: ChatSocketDeps;
}

export function PlaygroundPage({ session, chatDeps }: Props) {
  const { t } = useTranslation();
  const canUseSession = session.role === "admin";
  const [mode, setMode] = useState<Mode>(canUseSession ? "session" : "key");
  const [pastedKey, setPastedKey] = useState("");
  const apiKey = mode === "key" ? pastedKey.trim() || null : null;
  const credential = mode === "key" ? apiKey : session.token;
  const models = useModels(apiKey);
  const [model, setModel] = useState("");
  const [maxTokens, setMaxTokens] = useState("64");
  const [draft, setDraft] = useState("");
  const chat = useChat(credential, chatDeps);
  const chosen = model || models.data?.[0] || "";
  const busy = chat.status !== "idle";
  const ready = mode === "session" || apiKey !== null;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (!draft.trim() || !chosen || busy) return;
    const limit = Number.parseInt(maxTokens, 10);
    void chat.send(chosen, draft.trim(), Number.isFinite(limit) && limit > 0 ? limit : null);
    setDraft("");
  };
  return (
    <>
      <h1>{t("playground.title")}</h1>
      <CredentialPicker
        mode={mode}
        onMode={setMode}
        canUseSession={canUseSession}
        pastedKey={pastedKey}
        onPastedKey={setPastedKey}
      />
      <section className="card chat" aria-labelledby="chat-title">
        <h2 id="chat-title">{t("playground.conversation")}</h2>
        <div className="toolbar">
          <label>
            {t("playground.model")}
            <select value={chosen} onChange={(e) => setModel(e.target.value)} disabled={!ready || !models.data}>
              {(models.data ?? []).map((name) => (
                <option key={name} value={name}>
                  {name}
                </option>
              ))}
            </select>
          </label>
          <label>
            {t("playground.maxTokens")}
            <input inputMode="numeric" value={maxTokens} onChange={(e) => setMaxTokens(e.target.value)} size={6} />
          </label>
          <button type="button" onClick={chat.clear} disabled={busy || chat.turns.length === 0}>
            {t("playground.clear")}
          </button>
        </div>
        {ready ? <ErrorText error={models.error} /> : null}
        <Transcript chat={chat} />
        <form onSubmit={submit} className="composer">
          <label>
            {t("playground.message")}
            <textarea
              value={draft}
              rows={3}
              onChange={(e) => setDraft(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) submit(e);
              }}
            />
          </label>
          <div className="actions">
            <button type="submit" className="primary" disabled={busy || !ready || !chosen || !draft.trim()}>
              {t("playground.send")}
            </button>
            <button type="button" className="danger" onClick={chat.stop} disabled={chat.status !== "streaming"}>
              {t("playground.stop")}
            </button>
          </div>
        </form>
      </section>
    </>
  );
}
