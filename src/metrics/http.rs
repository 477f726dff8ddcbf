//! `gateway_http_requests_total` and `gateway_http_requests_duration_seconds`: every answer by
//! route pattern, method and status, observed when its body has been sent (a stream counts
//! its whole length, as the client sees it).
//!
//! Each worker keeps the series it has used, so a request costs one lookup in a map of its
//! own, two atomic adds and one clock read: no lock, no label hashing in the vec, no string
//! built. A route's pattern is found once per path for routes without parameters (their path
//! is their pattern); other paths ask the router each time, and paths no route matches are
//! `UNKNOWN`. Every label is bounded: patterns are the app's own, methods are HTTP's nine
//! (`RequestIds` refuses others before this layer), statuses are the codes the gateway answers.

use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::{Method, StatusCode};
use actix_web::Error;
use bytes::Bytes;
use foldhash::fast::RandomState;
use futures_util::future::{ready, Ready};
use pin_project_lite::pin_project;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

/// The label of paths no route matches.
const UNMATCHED: &str = "UNKNOWN";
/// Paths remembered as their own pattern, per worker; past it the router is asked each time.
/// Only paths a parameterless route matched get in, so the app's routes bound it anyway.
const MAX_STATIC_PATHS: usize = 256;

/// The two vecs, registered once; `wrap` it around the app.
#[derive(Clone)]
pub struct HttpMetrics {
    total: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub fn register(registry: &prometheus::Registry) -> Result<HttpMetrics, prometheus::Error> {
        let labels = ["endpoint", "method", "status"];
        let total = IntCounterVec::new(
            Opts::new("http_requests_total", "Total number of HTTP requests").namespace("gateway"),
            &labels,
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_requests_duration_seconds",
                "HTTP request duration in seconds for all requests",
            )
            .namespace("gateway"),
            &labels,
        )?;
        registry.register(Box::new(total.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(HttpMetrics { total, duration })
    }
}

/// One label set's handles, resolved at its first observation: no series shows in a scrape
/// before an answer was counted in it.
struct Series {
    metrics: HttpMetrics,
    endpoint: Box<str>,
    method: Method,
    status: StatusCode,
    handles: OnceCell<(IntCounter, Histogram)>,
}

impl Series {
    fn observe(&self, started: Instant) {
        let (total, duration) = self.handles.get_or_init(|| {
            let values = [&*self.endpoint, self.method.as_str(), self.status.as_str()];
            (
                self.metrics.total.with_label_values(&values),
                self.metrics.duration.with_label_values(&values),
            )
        });
        duration.observe(started.elapsed().as_secs_f64());
        total.inc();
    }
}

type Map<K, V> = HashMap<K, V, RandomState>;
/// An endpoint's series by method and status.
type ByAnswer = Map<(Method, StatusCode), Rc<Series>>;

/// A worker's resolved series: by endpoint label, then method and status.
struct Resolved {
    metrics: HttpMetrics,
    series: RefCell<Map<Box<str>, ByAnswer>>,
    /// Paths that are their route's pattern. `match_pattern` reads the path alone (not the
    /// method, not a resource's guards), so a path's label never depends on anything else.
    static_paths: RefCell<HashSet<Box<str>, RandomState>>,
}

impl Resolved {
    fn series(&self, request: &actix_web::HttpRequest, status: StatusCode) -> Rc<Series> {
        let path = request.path();
        let pattern;
        let endpoint = if self.static_paths.borrow().contains(path) {
            path
        } else {
            pattern = request.match_pattern();
            match &pattern {
                None => UNMATCHED,
                Some(pattern) => {
                    let mut paths = self.static_paths.borrow_mut();
                    if pattern == path && paths.len() < MAX_STATIC_PATHS {
                        paths.insert(Box::from(path));
                    }
                    pattern.as_str()
                }
            }
        };
        let method = request.method();
        if let Some(series) = self
            .series
            .borrow()
            .get(endpoint)
            .and_then(|by| by.get(&(method.clone(), status)))
        {
            return Rc::clone(series);
        }
        let series = Rc::new(Series {
            metrics: self.metrics.clone(),
            endpoint: Box::from(endpoint),
            method: method.clone(),
            status,
            handles: OnceCell::new(),
        });
        self.series
            .borrow_mut()
            .entry(Box::from(endpoint))
            .or_default()
            .insert((method.clone(), status), Rc::clone(&series));
        series
    }
}

impl<S, B> Transform<S, ServiceRequest> for HttpMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<Observed<B>>;
    type Error = Error;
    type Transform = HttpMetricsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HttpMetricsService {
            service,
            resolved: Rc::new(Resolved {
                metrics: self.clone(),
                series: RefCell::default(),
                static_paths: RefCell::default(),
            }),
        }))
    }
}

pub struct HttpMetricsService<S> {
    service: S,
    resolved: Rc<Resolved>,
}

impl<S, B> Service<ServiceRequest> for HttpMetricsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<Observed<B>>;
    type Error = Error;
    type Future = Answering<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        Answering {
            answer: self.service.call(request),
            started: Instant::now(),
            resolved: Rc::clone(&self.resolved),
        }
    }
}

pin_project! {
    pub struct Answering<F> {
        #[pin]
        answer: F,
        started: Instant,
        resolved: Rc<Resolved>,
    }
}

impl<F, B> Future for Answering<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = Result<ServiceResponse<Observed<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match std::task::ready!(this.answer.poll(cx)) {
            Ok(response) => response,
            // An error that escaped every handler carries no request to name a route by; it
            // becomes an answer further out, uncounted here (as with actix-web-prom before).
            Err(error) => return Poll::Ready(Err(error)),
        };
        let series = this.resolved.series(response.request(), response.status());
        let started = *this.started;
        Poll::Ready(Ok(response.map_body(move |_, body| Observed {
            body,
            series: Some(series),
            started,
        })))
    }
}

pin_project! {
    /// A response body that observes its series once it is done or dropped.
    pub struct Observed<B> {
        #[pin]
        body: B,
        series: Option<Rc<Series>>,
        started: Instant,
    }

    impl<B> PinnedDrop for Observed<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(series) = this.series.take() {
                series.observe(*this.started);
            }
        }
    }
}

impl<B: MessageBody> MessageBody for Observed<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.project().body.poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, web, App, HttpResponse};

    fn sample(registry: &prometheus::Registry, name: &str, labels: [&str; 3]) -> Option<u64> {
        let families = registry.gather();
        let family = families.iter().find(|f| f.name() == name)?;
        let metric = family.get_metric().iter().find(|m| {
            let got: Vec<&str> = m.get_label().iter().map(|l| l.value()).collect();
            got == labels
        })?;
        Some(if name.ends_with("_total") {
            metric.get_counter().get_value() as u64
        } else {
            metric.get_histogram().get_sample_count()
        })
    }

    /// Route patterns name the series (parameters stay parameters), unmatched paths share
    /// `UNKNOWN`, and a series is counted once per answer, its duration observed with it.
    #[actix_web::test]
    async fn answers_are_counted_by_route_pattern_method_and_status() {
        let registry = prometheus::Registry::new();
        let metrics = HttpMetrics::register(&registry).expect("register");
        let app = test::init_service(
            App::new()
                .wrap(metrics)
                .route("/v1/models", web::get().to(HttpResponse::Ok))
                .route("/keys/{id}", web::delete().to(HttpResponse::NoContent))
                .service(
                    web::resource("/read-only")
                        .guard(actix_web::guard::Get())
                        .to(HttpResponse::Ok),
                ),
        )
        .await;
        for uri in ["/v1/models", "/v1/models", "/v1/models?x=1"] {
            let response =
                test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
            assert_eq!(response.status(), StatusCode::OK);
            test::read_body(response).await;
        }
        for id in ["1", "2", "made-up"] {
            let request = test::TestRequest::delete().uri(&format!("/keys/{id}"));
            test::read_body(test::call_service(&app, request.to_request()).await).await;
        }
        // A guarded resource names its path whatever the method (as actix's `match_pattern`
        // does): remembering `/read-only` after a GET labels a refused POST the same way.
        for method in [Method::GET, Method::POST] {
            let request = test::TestRequest::default()
                .method(method)
                .uri("/read-only");
            test::read_body(test::call_service(&app, request.to_request()).await).await;
        }
        for uri in ["/no/such", "/v1/models/extra"] {
            test::read_body(
                test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await,
            )
            .await;
        }
        let total = "gateway_http_requests_total";
        let duration = "gateway_http_requests_duration_seconds";
        assert_eq!(
            sample(&registry, total, ["/v1/models", "GET", "200"]),
            Some(3)
        );
        assert_eq!(
            sample(&registry, duration, ["/v1/models", "GET", "200"]),
            Some(3)
        );
        assert_eq!(
            sample(&registry, total, ["/keys/{id}", "DELETE", "204"]),
            Some(3)
        );
        assert_eq!(sample(&registry, total, ["UNKNOWN", "GET", "404"]), Some(2));
        assert_eq!(
            sample(&registry, total, ["/read-only", "GET", "200"]),
            Some(1)
        );
        assert_eq!(
            sample(&registry, total, ["/read-only", "POST", "404"]),
            Some(1)
        );
        let series: usize = registry
            .gather()
            .iter()
            .filter(|f| f.name() == total)
            .map(|f| f.get_metric().len())
            .sum();
        assert_eq!(series, 5, "no path became a label");
    }

    /// A streamed answer is observed when its body ends, not when its head is ready.
    #[actix_web::test]
    async fn a_stream_is_observed_when_its_body_ends() {
        let registry = prometheus::Registry::new();
        let metrics = HttpMetrics::register(&registry).expect("register");
        let (send, chunks) = tokio::sync::mpsc::channel::<Result<Bytes, Error>>(4);
        let chunks = Rc::new(RefCell::new(Some(chunks)));
        let app = test::init_service(App::new().wrap(metrics).route(
            "/stream",
            web::get().to(move || {
                let chunks = chunks.borrow_mut().take().expect("one stream");
                async move {
                    let body = futures_util::stream::unfold(chunks, |mut chunks| async move {
                        chunks.recv().await.map(|chunk| (chunk, chunks))
                    });
                    HttpResponse::Ok().streaming(body)
                }
            }),
        ))
        .await;
        let response =
            test::call_service(&app, test::TestRequest::get().uri("/stream").to_request()).await;
        let labels = ["/stream", "GET", "200"];
        let total = "gateway_http_requests_total";
        assert_eq!(
            sample(&registry, total, labels),
            None,
            "counted before the body ended"
        );
        send.send(Ok(Bytes::from_static(b"data: 1\n\n")))
            .await
            .expect("open");
        drop(send);
        assert_eq!(test::read_body(response).await, "data: 1\n\n");
        assert_eq!(sample(&registry, total, labels), Some(1));
    }
}
