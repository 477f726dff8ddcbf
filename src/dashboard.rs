//! The web dashboard (`frontend/`'s Vite build) at `/`, and the bundled GraphiQL page at
//! `GET /graphql`: static files through actix-files, an SPA fallback to `index.html` for
//! browser paths, and a short page saying how to build either when the build is absent.
//!
//! Hashed assets (`/assets/*`) never change under one name, so they are cached for a year;
//! `index.html` and `graphiql.html` name the current assets, so browsers revalidate them on
//! every load (`no-cache`, answered 304 from the ETag when unchanged).

use actix_files::{Files, NamedFile};
use actix_web::body::MessageBody;
use actix_web::dev::{fn_service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::{from_fn, Next};
use actix_web::{guard, web, HttpRequest, HttpResponse};

use crate::config::DashboardConfig;
use crate::error::GatewayError;

/// Paths the gateway's APIs own: never answered with the dashboard, so a mistyped API path
/// still gets a JSON 404.
pub const API_PREFIXES: &[&str] = &[
    "/v1",
    "/admin",
    "/auth",
    "/graphql",
    "/graphiql",
    "/health",
    "/ready",
    "/metrics",
];

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Mounts the build's files when the dashboard is on and built. `/` and the SPA fallback are
/// [`fallback`], the application's default service, so they work (with the how-to-build
/// page) even when the build is missing.
pub fn configure(config: &mut web::ServiceConfig, dashboard: &DashboardConfig) {
    if !dashboard.enabled {
        return;
    }
    if !dashboard.dir.is_dir() {
        tracing::warn!(
            dir = %dashboard.dir.display(),
            "the dashboard is not built: `/` explains how (`make frontend`), then restart"
        );
        return;
    }
    config
        .service(web::resource("/").guard(read_only()).to(fallback))
        .service(
            web::scope("/assets")
                .wrap(from_fn(cache_hashed_assets))
                .service(
                    Files::new("", dashboard.dir.join("assets"))
                        .guard(read_only())
                        .default_handler(fn_service(asset_not_found)),
                ),
        )
        .service(
            Files::new("/", &dashboard.dir)
                .guard(read_only())
                .default_handler(fn_service(fallback_service)),
        );
}

fn read_only() -> impl guard::Guard {
    guard::Any(guard::Get()).or(guard::Head())
}

fn is_api_path(path: &str) -> bool {
    API_PREFIXES.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The application's default service: browser paths get the dashboard (`index.html`, whose
/// router shows the page), everything else the JSON 404.
pub async fn fallback(request: HttpRequest) -> Result<HttpResponse, GatewayError> {
    let dashboard = request.app_data::<web::Data<DashboardConfig>>();
    let browser_path =
        matches!(*request.method(), Method::GET | Method::HEAD) && !is_api_path(request.path());
    match dashboard {
        Some(dashboard) if dashboard.enabled && browser_path => {
            let index = dashboard.dir.join("index.html");
            Ok(page(&request, &index, NOT_BUILT).await)
        }
        _ => crate::handlers::ops::route_not_found(request).await,
    }
}

/// [`fallback`] as a file service's default handler.
async fn fallback_service(request: ServiceRequest) -> Result<ServiceResponse, actix_web::Error> {
    let (request, _) = request.into_parts();
    Ok(match fallback(request.clone()).await {
        Ok(response) => ServiceResponse::new(request, response),
        Err(error) => ServiceResponse::from_err(error, request),
    })
}

/// A missing hashed asset: the JSON 404 (never `index.html`, which a script tag cannot run).
async fn asset_not_found(request: ServiceRequest) -> Result<ServiceResponse, actix_web::Error> {
    let (request, _) = request.into_parts();
    let error = GatewayError::RouteNotFound {
        method: request.method().to_string(),
        path: request.path().to_string(),
    };
    Ok(ServiceResponse::from_err(error, request))
}

/// GraphiQL from the dashboard build (`graphiql.html`), or how to build it.
pub async fn graphiql(request: &HttpRequest, dashboard: &DashboardConfig) -> HttpResponse {
    page(
        request,
        &dashboard.dir.join("graphiql.html"),
        GRAPHIQL_NOT_BUILT,
    )
    .await
}

/// An HTML entry page that browsers revalidate on every load; `missing` when it is not built.
async fn page(
    request: &HttpRequest,
    path: &std::path::Path,
    missing: &'static str,
) -> HttpResponse {
    match NamedFile::open_async(path).await {
        Ok(file) => {
            let mut response = file.into_response(request);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
            response
        }
        Err(_) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, REVALIDATE))
            .body(missing),
    }
}

/// Hashed file names change with their content: a found asset is cacheable for good.
async fn cache_hashed_assets(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(request).await?;
    let status = response.status();
    if status.is_success() || status == actix_web::http::StatusCode::NOT_MODIFIED {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    }
    Ok(response)
}

const NOT_BUILT: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>AI Gateway</title></head>
<body style=\"font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto\">
<h1>The dashboard is not built yet</h1>
<p>The gateway is running: the API answers under <code>/v1</code>, <code>/admin</code> and
<code>/graphql</code>. To get the web dashboard here, build it and restart the gateway:</p>
<pre>make frontend      # or: npm --prefix frontend ci &amp;&amp; npm --prefix frontend run build</pre>
<p><code>make run</code> does this for you. The build goes to <code>frontend/dist</code>
(<code>DASHBOARD_DIR</code>); <code>DASHBOARD_ENABLED=false</code> turns this page off.</p>
</body></html>
";

const GRAPHIQL_NOT_BUILT: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>GraphiQL</title></head>
<body style=\"font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto\">
<h1>GraphiQL is not built yet</h1>
<p>GraphiQL is bundled with the web dashboard, so it works without internet access. Build it
(no restart needed for this page):</p>
<pre>make frontend      # or: npm --prefix frontend ci &amp;&amp; npm --prefix frontend run build</pre>
<p>Meanwhile <code>POST /graphql</code> answers queries, e.g.
<code>curl -H 'Authorization: Bearer &lt;token&gt;' -H 'Content-Type: application/json'
-d '{\"query\":\"{ me { kind } }\"}' http://localhost:8080/graphql</code></p>
</body></html>
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_prefixes_match_whole_segments() {
        for path in [
            "/v1",
            "/v1/models",
            "/admin/keys",
            "/graphql",
            "/metrics",
            "/auth/login",
        ] {
            assert!(is_api_path(path), "{path}");
        }
        for path in [
            "/",
            "/keys",
            "/v1x",
            "/administrators",
            "/usage/today",
            "/assets/a.js",
        ] {
            assert!(!is_api_path(path), "{path}");
        }
    }
}
