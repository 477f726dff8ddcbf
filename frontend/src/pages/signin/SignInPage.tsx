//! Username and password → `POST /auth/login`; says why when a session expired.

import { useState, type FormEvent } from "react";
import { useTranslation } from "react-i18next";
import { useLogin } from "../../api/auth";
import { endReason } from "../../api/useSession";
import { errorWords } from "../../components/ErrorText";
import { LanguageSwitch } from "../../components/LanguageSwitch";

export function SignInPage() {
  const { t } = useTranslation();
  const login = useLogin();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const expired = endReason() === "expired";
  const submit = (event: FormEvent) => {
    event.preventDefault();
    login.mutate({ username, password });
  };
  return (
    <main className="signin" id="main">
      <form onSubmit={submit} className="card" aria-labelledby="signin-title">
        <h1 id="signin-title">{t("signin.title")}</h1>
        <p className="muted">{t("signin.intro")}</p>
        {expired && !login.isError ? (
          <p role="status" className="notice">
            {t("signin.expired")}
          </p>
        ) : null}
        <label>
          {t("signin.username")}
          <input
            name="username"
            autoComplete="username"
            required
            value={username}
            onChange={(event) => setUsername(event.target.value)}
          />
        </label>
        <label>
          {t("signin.password")}
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(event) => setPassword(event.target.value)}
          />
        </label>
        {login.isError ? (
          <p className="error" role="alert">
            {errorWords(login.error, t)}
          </p>
        ) : null}
        <button type="submit" className="primary" disabled={login.isPending}>
          {login.isPending ? t("signin.signingIn") : t("signin.submit")}
        </button>
        <div className="signin-footer">
          <LanguageSwitch />
          <a href="/graphiql">{t("nav.graphiql")}</a>
        </div>
      </form>
    </main>
  );
}
