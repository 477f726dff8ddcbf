//! The offline GraphiQL page (dist/graphiql.html, served by the gateway at /graphql and
//! /graphiql): everything from npm, no CDN. It sends the dashboard's credential from
//! sessionStorage `aigw.token`, or a key pasted here.

import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { GraphiQL } from "graphiql";
import "graphiql/setup-workers/vite";
import "graphiql/style.css";
import { StrictMode, useMemo, useState, type FormEvent } from "react";
import { useTranslation } from "react-i18next";
import { createRoot } from "react-dom/client";
import { TOKEN_KEY } from "../api/session";
import "../i18n";
import "./graphiql.css";

const DEFAULT_QUERY = `# Who am I, which models and services does the gateway know?
{
  me { kind keyId admin }
  models { name service }
  services { name eligibleEndpoints }
}
`;

function CredentialBar({ token, onChange }: { token: string; onChange: (token: string) => void }) {
  const { t } = useTranslation();
  const [draft, setDraft] = useState(token);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    onChange(draft.trim());
  };
  return (
    <form className="credential-bar" onSubmit={submit}>
      <a href="/">{t("graphiql.back")}</a>
      <label>
        {t("graphiql.credential")}
        <input
          type="password"
          autoComplete="off"
          value={draft}
          placeholder={t("graphiql.placeholder")}
          onChange={(event) => setDraft(event.target.value)}
        />
      </label>
      <button type="submit">{t("graphiql.use")}</button>
      <span role="status">{token ? t("graphiql.sending") : t("graphiql.none")}</span>
    </form>
  );
}

function Page() {
  const [token, setToken] = useState(() => sessionStorage.getItem(TOKEN_KEY) ?? "");
  const fetcher = useMemo(
    () =>
      createGraphiQLFetcher({
        url: `${window.location.origin}/graphql`,
        headers: token ? { Authorization: `Bearer ${token}` } : {},
      }),
    [token],
  );
  const use = (next: string) => {
    if (next) sessionStorage.setItem(TOKEN_KEY, next);
    else sessionStorage.removeItem(TOKEN_KEY);
    setToken(next);
  };
  return (
    <div className="graphiql-page">
      <CredentialBar token={token} onChange={use} />
      <div className="graphiql-host">
        <GraphiQL key={token} fetcher={fetcher} defaultQuery={DEFAULT_QUERY} />
      </div>
    </div>
  );
}

const root = document.getElementById("graphiql");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <Page />
    </StrictMode>,
  );
}
