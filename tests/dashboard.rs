//! The web dashboard at `/` and GraphiQL at `GET /graphql`, from a build directory made by
//! each test; the how-to-build pages when it is missing; CORS for the Vite dev server.

mod common;

use std::path::Path;

use awc::http::header::HeaderMap;
use awc::http::Method;
use common::*;

const INDEX: &str =
    "<!doctype html><title>dashboard</title><script src=\"/assets/app-3f9a1c.js\"></script>";
const GRAPHIQL: &str = "<!doctype html><title>graphiql bundle</title>";
const SCRIPT: &str = "console.log('dashboard');";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A Vite-like build: index.html, graphiql.html, hashed assets and a public file; beside it
/// a file that must never be reachable.
fn write_build(root: &Path) -> std::path::PathBuf {
    let dist = root.join("dist");
    std::fs::create_dir_all(dist.join("assets")).expect("dist");
    std::fs::write(dist.join("index.html"), INDEX).expect("index");
    std::fs::write(dist.join("graphiql.html"), GRAPHIQL).expect("graphiql");
    std::fs::write(dist.join("assets/app-3f9a1c.js"), SCRIPT).expect("script");
    std::fs::write(dist.join("assets/app-77d0e2.css"), "body{}").expect("style");
    std::fs::write(dist.join("robots.txt"), "User-agent: *\n").expect("robots");
    std::fs::write(root.join("secret.txt"), "do not serve").expect("secret");
    dist
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn error_code(&self) -> String {
        error_code(self.body.as_bytes())
    }
}

async fn fetch(gateway: &TestGateway, method: Method, path: &str) -> Answer {
    let mut response = gateway
        .client
        .request(method, gateway.url(path))
        .send()
        .await
        .expect("response");
    let body = response.body().await.expect("body");
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn start_with_dashboard(dir: &Path, enabled: bool) -> TestGateway {
    let mut raw = test_config();
    raw.dashboard.dir = dir.display().to_string();
    raw.dashboard.enabled = enabled;
    start_gateway(raw, &serde_json::json!({})).await
}

#[actix_rt::test]
async fn serves_the_build_with_spa_fallback_and_cache_headers() {
    let root = tempfile::tempdir().expect("tempdir");
    let gateway = start_with_dashboard(&write_build(root.path()), true).await;

    // The app and its client-side routes: index.html, revalidated on every load.
    for path in ["/", "/keys", "/usage/by-model", "/playground?model=x"] {
        let answer = fetch(&gateway, Method::GET, path).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, INDEX),
            "{path}"
        );
        assert!(
            answer.header("content-type").starts_with("text/html"),
            "{path}"
        );
        assert_eq!(answer.header("cache-control"), "no-cache", "{path}");
    }
    assert_eq!(fetch(&gateway, Method::HEAD, "/").await.status, 200);

    // Hashed assets: right types, cached for a year.
    let script = fetch(&gateway, Method::GET, "/assets/app-3f9a1c.js").await;
    assert_eq!((script.status, script.body.as_str()), (200, SCRIPT));
    assert!(
        script.header("content-type").contains("javascript"),
        "{}",
        script.header("content-type")
    );
    assert_eq!(script.header("cache-control"), IMMUTABLE);
    let style = fetch(&gateway, Method::GET, "/assets/app-77d0e2.css").await;
    assert!(style.header("content-type").starts_with("text/css"));
    assert_eq!(style.header("cache-control"), IMMUTABLE);
    // A missing asset is a 404, not the app (a script tag cannot run HTML) and not cached.
    let missing = fetch(&gateway, Method::GET, "/assets/app-000000.js").await;
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, "not_found".into())
    );
    assert_eq!(missing.header("cache-control"), "");
    // Other files of the build are served as they are.
    let robots = fetch(&gateway, Method::GET, "/robots.txt").await;
    assert_eq!(
        (robots.status, robots.header("content-type")),
        (200, "text/plain; charset=utf-8")
    );

    // Nothing outside the build.
    for path in [
        "/..%2Fsecret.txt",
        "/assets/..%2F..%2Fsecret.txt",
        "/%2e%2e/secret.txt",
    ] {
        let answer = fetch(&gateway, Method::GET, path).await;
        assert!(
            !answer.body.contains("do not serve"),
            "{path}: {}",
            answer.body
        );
    }

    // API paths keep their JSON answers; other methods never get the app.
    for (method, path, status, code) in [
        (Method::GET, "/v1/nothing", 404, "not_found"),
        (Method::GET, "/admin", 404, "not_found"),
        (Method::POST, "/keys", 404, "not_found"),
        (Method::DELETE, "/", 404, "not_found"),
        (Method::GET, "/admin/keys", 401, "missing_token"),
        (Method::GET, "/health", 200, ""),
    ] {
        let answer = fetch(&gateway, method.clone(), path).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (status, code.into()),
            "{method} {path}"
        );
        assert_ne!(answer.body, INDEX, "{method} {path}");
    }

    // GraphiQL is the bundled page.
    for path in ["/graphql", "/graphiql"] {
        let answer = fetch(&gateway, Method::GET, path).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, GRAPHIQL),
            "{path}"
        );
        assert!(answer.header("content-type").starts_with("text/html"));
        assert_eq!(answer.header("cache-control"), "no-cache");
    }
    gateway.stop().await;
}

#[actix_rt::test]
async fn without_a_build_the_pages_say_how_to_build_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let gateway = start_with_dashboard(&root.path().join("dist"), true).await;
    for path in ["/", "/keys"] {
        let answer = fetch(&gateway, Method::GET, path).await;
        assert_eq!(answer.status, 200, "{path}");
        assert!(answer.header("content-type").starts_with("text/html"));
        assert!(answer.body.contains("make frontend"), "{}", answer.body);
    }
    for path in ["/graphql", "/graphiql"] {
        let answer = fetch(&gateway, Method::GET, path).await;
        assert_eq!(answer.status, 200, "{path}");
        assert!(
            answer.body.contains("GraphiQL is not built"),
            "{}",
            answer.body
        );
        assert!(
            answer.body.contains("npm --prefix frontend ci"),
            "{}",
            answer.body
        );
    }
    let api = fetch(&gateway, Method::GET, "/v1/nothing").await;
    assert_eq!((api.status, api.error_code()), (404, "not_found".into()));
    // The API itself is unaffected.
    assert_eq!(gateway.get_json("/health").await.0, 200);
    gateway.stop().await;
}

#[actix_rt::test]
async fn the_dashboard_can_be_switched_off() {
    let root = tempfile::tempdir().expect("tempdir");
    let gateway = start_with_dashboard(&write_build(root.path()), false).await;
    for path in ["/", "/keys", "/assets/app-3f9a1c.js"] {
        let answer = fetch(&gateway, Method::GET, path).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (404, "not_found".into()),
            "{path}"
        );
    }
    // GraphiQL follows GRAPHQL_PLAYGROUND, not the dashboard switch.
    let graphiql = fetch(&gateway, Method::GET, "/graphql").await;
    assert_eq!((graphiql.status, graphiql.body.as_str()), (200, GRAPHIQL));
    gateway.stop().await;
}

/// A browser's preflight from `origin` for an authenticated admin call.
async fn preflight(gateway: &TestGateway, origin: &str) -> Answer {
    let mut response = gateway
        .client
        .request(Method::OPTIONS, gateway.url("/admin/overview"))
        .insert_header(("origin", origin))
        .insert_header(("access-control-request-method", "GET"))
        .insert_header((
            "access-control-request-headers",
            "authorization, content-type",
        ))
        .send()
        .await
        .expect("preflight");
    let body = response.body().await.expect("body");
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[actix_rt::test]
async fn the_vite_dev_server_is_an_allowed_origin_by_default() {
    let gateway = start_gateway(test_config(), &serde_json::json!({})).await;
    for origin in ["http://localhost:3000", "http://127.0.0.1:3000"] {
        let answer = preflight(&gateway, origin).await;
        assert_eq!(answer.status, 200, "{origin}: {}", answer.body);
        assert_eq!(answer.header("access-control-allow-origin"), origin);
        let headers = answer.header("access-control-allow-headers").to_lowercase();
        assert!(headers.contains("authorization"), "{headers}");
        // The actual request carries the header too, so the browser hands over the answer.
        let mut response = gateway
            .client
            .post(gateway.url("/auth/login"))
            .insert_header(("origin", origin))
            .send_json(&serde_json::json!({"username": "nobody", "password": "wrong"}))
            .await
            .expect("login");
        assert_eq!(response.status().as_u16(), 401);
        let allowed = response
            .headers()
            .get("access-control-allow-origin")
            .cloned();
        let _ = response.body().await;
        assert_eq!(allowed.as_ref().and_then(|v| v.to_str().ok()), Some(origin));
    }
    let stranger = preflight(&gateway, "http://evil.example").await;
    assert_eq!(stranger.header("access-control-allow-origin"), "");
    gateway.stop().await;
}
