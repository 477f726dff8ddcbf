//! The frame of every signed-in page: navigation (by role), language, GraphiQL, sign-out.

import { Suspense } from "react";
import { NavLink, Outlet } from "react-router";
import { useTranslation } from "react-i18next";
import { signOut, type Session } from "../api/session";
import { LanguageSwitch } from "./LanguageSwitch";

export const PAGES = [
  { path: "/", key: "overview", adminOnly: true },
  { path: "/keys", key: "keys", adminOnly: true },
  { path: "/usage", key: "usage", adminOnly: true },
  { path: "/upstreams", key: "upstreams", adminOnly: true },
  { path: "/playground", key: "playground", adminOnly: false },
] as const;

export function Layout({ session }: { session: Session }) {
  const { t } = useTranslation();
  const pages = PAGES.filter((page) => session.role === "admin" || !page.adminOnly);
  return (
    <div className="app">
      <a className="skip" href="#main">
        {t("nav.skip")}
      </a>
      <header className="topbar">
        <span className="brand">{t("app.title")}</span>
        <nav aria-label={t("nav.label")}>
          <ul>
            {pages.map((page) => (
              <li key={page.path}>
                <NavLink to={page.path} end={page.path === "/"}>
                  {t(`nav.${page.key}`)}
                </NavLink>
              </li>
            ))}
            <li>
              <a href="/graphiql">{t("nav.graphiql")}</a>
            </li>
          </ul>
        </nav>
        <div className="account">
          <LanguageSwitch />
          <span className="muted">{t("nav.signedInAs", { user: session.username, role: t(`roles.${session.role}`) })}</span>
          <button type="button" onClick={() => signOut()}>
            {t("nav.signOut")}
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Suspense fallback={<p className="muted">{t("common.loading")}</p>}>
          <Outlet />
        </Suspense>
      </main>
    </div>
  );
}
