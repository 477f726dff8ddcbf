//! At debug, everything logged while a request is served is inside its `http_request` span.
//! A test binary of its own: it installs the process's global subscriber at debug, which tests
//! sharing a process with others (each with its own scoped subscriber, or none) cannot rely on.

use std::io::Write;
use std::sync::{Arc, Mutex};

use actix_web::{test, web, App, HttpResponse};
use gateway::request_id::RequestIds;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn handler() -> HttpResponse {
    tracing::debug!("in the handler");
    HttpResponse::Ok().finish()
}

#[actix_rt::test]
async fn at_debug_the_handlers_events_are_inside_the_request_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let app = test::init_service(
        App::new()
            .wrap(RequestIds)
            .route("/x", web::post().to(handler)),
    )
    .await;
    let request = test::TestRequest::post()
        .uri("/x")
        .insert_header(("x-request-id", "span-7"))
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status().as_u16(), 200);
    let log = String::from_utf8(captured.0.lock().expect("log").clone()).expect("utf-8");
    let line = log
        .lines()
        .find(|line| line.contains("in the handler"))
        .unwrap_or_else(|| panic!("no handler event in {log}"));
    assert!(
        line.contains("http_request{method=POST path=/x request_id=span-7}"),
        "{line}"
    );
}
