//! Routes: sign-in outside, every other page inside the layout, admin pages only for admins.

import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { lazy, Suspense } from "react";
import { useTranslation } from "react-i18next";
import { BrowserRouter, Navigate, Route, Routes } from "react-router";
import { ApiError } from "./api/client";
import { useSession } from "./api/useSession";
import { Layout } from "./components/Layout";
import { SignInPage } from "./pages/signin/SignInPage";

// Pages load when first opened: sign-in needs none of them, and only two draw charts.
const KeysPage = lazy(() => import("./pages/keys/KeysPage").then((m) => ({ default: m.KeysPage })));
const OverviewPage = lazy(() => import("./pages/overview/OverviewPage").then((m) => ({ default: m.OverviewPage })));
const PlaygroundPage = lazy(() => import("./pages/playground/PlaygroundPage").then((m) => ({ default: m.PlaygroundPage })));
const UpstreamsPage = lazy(() => import("./pages/upstreams/UpstreamsPage").then((m) => ({ default: m.UpstreamsPage })));
const UsagePage = lazy(() => import("./pages/usage/UsagePage").then((m) => ({ default: m.UsagePage })));

function Loading() {
  const { t } = useTranslation();
  return <p className="muted">{t("common.loading")}</p>;
}

export function makeQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        // Client errors (bad input, no permission, signed out) do not get better by retrying.
        retry: (count, error) => !(error instanceof ApiError && error.status >= 400 && error.status < 500) && count < 2,
        refetchOnWindowFocus: false,
      },
    },
  });
}

function AppRoutes() {
  const session = useSession();
  if (!session) {
    return (
      <Routes>
        <Route path="*" element={<SignInPage />} />
      </Routes>
    );
  }
  const admin = session.role === "admin";
  return (
    <Routes>
      <Route path="/signin" element={<Navigate to="/" replace />} />
      <Route element={<Layout session={session} />}>
        <Route index element={admin ? <OverviewPage /> : <Navigate to="/playground" replace />} />
        {admin ? (
          <>
            <Route path="keys" element={<KeysPage />} />
            <Route path="usage" element={<UsagePage />} />
            <Route path="upstreams" element={<UpstreamsPage />} />
          </>
        ) : null}
        <Route path="playground" element={<PlaygroundPage session={session} />} />
        <Route path="*" element={<Navigate to="/" replace />} />
      </Route>
    </Routes>
  );
}

export function App({ client = makeQueryClient() }: { client?: QueryClient }) {
  return (
    <QueryClientProvider client={client}>
      <BrowserRouter>
        <Suspense fallback={<Loading />}>
          <AppRoutes />
        </Suspense>
      </BrowserRouter>
    </QueryClientProvider>
  );
}
