//! The proxied requests' connections: HTTP/1.1 keep-alive connections to each endpoint, owned
//! by one worker.
//!
//! hyper's own `http1` connections, pooled here instead of in hyper-util's general client:
//! a worker's pool is used by that worker alone, so it needs no lock, no pool-key hashing of
//! scheme and authority on every request, and no race between a checkout and a connect. What
//! the general client guaranteed, this keeps:
//! - no connection is used after [`UPSTREAM_IDLE`] idle, so the upstream's own idle close
//!   (uvicorn's and actix-web's 5 s) never crosses a request on the wire;
//! - a request is sent again on another connection only when hyper hands it back unsent, so a
//!   POST that may have reached an upstream is never repeated;
//! - every socket has TCP_NODELAY, and each connect is bounded by the service's timeout.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;

/// Idle proxied connections are not used, and are closed, after this long: before the
/// upstream closes them itself, as uvicorn and actix-web do after 5 idle seconds. A server's
/// close that crosses a request on the wire breaks that request (a 502 the client did nothing
/// for), and a POST cannot be resent safely; closing first leaves no such race.
pub const UPSTREAM_IDLE: Duration = Duration::from_secs(4);

/// How often idle connections past [`UPSTREAM_IDLE`] are closed when no request comes to
/// take them (a request never uses one, whenever it comes).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

type Sender = SendRequest<Full<Bytes>>;

/// One worker's connections for proxied requests, by endpoint (`host:port`). A clone is the
/// same pool (one reference count).
#[derive(Clone)]
pub struct Http1Pool {
    inner: Rc<Inner>,
}

struct Inner {
    connector: HttpConnector,
    hosts: RefCell<HashMap<Box<str>, Rc<Host>, foldhash::fast::RandomState>>,
    sweeping: Cell<bool>,
}

/// One endpoint's idle connections, most recently used last.
struct Host {
    /// `host:port`, the `Host` header every request to it carries.
    authority: HeaderValue,
    /// `http://host:port/`, what a new connection is opened to.
    uri: Uri,
    idle: RefCell<Vec<Idle>>,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

impl Idle {
    fn usable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && now.saturating_duration_since(self.since) < UPSTREAM_IDLE
    }
}

/// Why an exchange failed: before a connection existed, or on one.
#[derive(Debug)]
pub enum SendError {
    /// The address is not one a connection can be opened to.
    Address(String),
    /// Connecting failed or timed out (the source chain holds the `io::Error`).
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed while the request was sent or the answer's head read.
    Exchange(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Address(detail) => write!(f, "invalid upstream address: {detail}"),
            SendError::Connect(error) => write!(f, "connect: {error}"),
            SendError::Exchange(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Address(_) => None,
            SendError::Connect(error) => error.source(),
            SendError::Exchange(error) => std::error::Error::source(error),
        }
    }
}

impl Http1Pool {
    /// A pool whose connects give up after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        Http1Pool {
            inner: Rc::new(Inner {
                connector,
                hosts: RefCell::default(),
                sweeping: Cell::new(false),
            }),
        }
    }

    /// Sends `request` (origin-form URI; its `Host` is set here) to the endpoint at
    /// `address` on an idle connection, or on a new one when none is left. The answer's body
    /// gives its connection back when read to the end.
    pub async fn send(
        &self,
        address: &str,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, SendError> {
        let host = self.host(address)?;
        request.headers_mut().insert(HOST, host.authority.clone());
        while let Some(mut sender) = host.checkout() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(PooledBody::wrap(response, sender, host)),
                // Handed back unsent (the connection closed before it took the request): the
                // next connection may carry it, and nothing reached the upstream.
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Exchange(error.into_error())),
                },
            }
        }
        let mut sender = self.connect(&host).await?;
        match sender.try_send_request(request).await {
            Ok(response) => Ok(PooledBody::wrap(response, sender, host)),
            Err(error) => Err(SendError::Exchange(error.into_error())),
        }
    }

    /// The endpoint's entry, made on its first request.
    fn host(&self, address: &str) -> Result<Rc<Host>, SendError> {
        if let Some(host) = self.inner.hosts.borrow().get(address) {
            return Ok(Rc::clone(host));
        }
        let authority =
            HeaderValue::from_str(address).map_err(|_| SendError::Address(address.to_owned()))?;
        let uri = format!("http://{address}/")
            .parse::<Uri>()
            .map_err(|error| SendError::Address(format!("{address}: {error}")))?;
        let host = Rc::new(Host {
            authority,
            uri,
            idle: RefCell::default(),
        });
        self.inner
            .hosts
            .borrow_mut()
            .insert(address.into(), Rc::clone(&host));
        Ok(host)
    }

    async fn connect(&self, host: &Host) -> Result<Sender, SendError> {
        let mut connector = self.inner.connector.clone();
        let stream = tower_service::Service::call(&mut connector, host.uri.clone())
            .await
            .map_err(|error| SendError::Connect(Box::new(error)))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(stream)
            .await
            .map_err(SendError::Exchange)?;
        actix_web::rt::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        self.start_sweeping();
        Ok(sender)
    }

    /// Starts this worker's sweep of idle connections, once. It ends with the pool.
    fn start_sweeping(&self) {
        if self.inner.sweeping.replace(true) {
            return;
        }
        let pool = Rc::downgrade(&self.inner);
        actix_web::rt::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(pool) = Weak::upgrade(&pool) else {
                    return;
                };
                pool.sweep(Instant::now());
            }
        });
    }

    /// Idle connections to `address`.
    #[cfg(test)]
    fn idle(&self, address: &str) -> usize {
        self.inner
            .hosts
            .borrow()
            .get(address)
            .map_or(0, |host| host.idle.borrow().len())
    }
}

impl Inner {
    /// Closes idle connections past their time and forgets endpoints with none left and no
    /// request out.
    fn sweep(&self, now: Instant) {
        self.hosts.borrow_mut().retain(|_, host| {
            host.idle.borrow_mut().retain(|idle| idle.usable(now));
            Rc::strong_count(host) > 1 || !host.idle.borrow().is_empty()
        });
    }
}

impl Host {
    /// The most recently used idle connection that may still be used; older ones past their
    /// time are closed on the way.
    fn checkout(&self) -> Option<Sender> {
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        while let Some(candidate) = idle.pop() {
            if candidate.usable(now) {
                return Some(candidate.sender);
            }
        }
        None
    }

    fn checkin(&self, sender: Sender) {
        if !sender.is_closed() {
            self.idle.borrow_mut().push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

/// An answer's body that gives its connection back to the pool once read to the end. Dropped
/// earlier, the connection goes with it (hyper closes a connection whose answer was not read).
pub struct PooledBody {
    body: Incoming,
    owner: Option<(Sender, Rc<Host>)>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("body", &self.body)
            .field("pooled", &self.owner.is_some())
            .finish()
    }
}

impl PooledBody {
    fn wrap(response: Response<Incoming>, sender: Sender, host: Rc<Host>) -> Response<Self> {
        response.map(|body| {
            let mut body = PooledBody {
                body,
                owner: Some((sender, host)),
            };
            if body.body.is_end_stream() {
                body.give_back();
            }
            body
        })
    }

    fn give_back(&mut self) {
        if let Some((sender, host)) = self.owner.take() {
            host.checkin(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            None => this.give_back(),
            Some(Err(_)) => this.owner = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::{Read, Write};

    /// An HTTP/1.1 server that answers each request with the `Host` line it got, up to
    /// `answers_per_connection` per connection (the last says `connection: close`), and
    /// reports each connection it accepts.
    fn server(
        answers_per_connection: usize,
    ) -> (String, std::sync::mpsc::Receiver<std::net::SocketAddr>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let (accepted, connections) = std::sync::mpsc::sync_channel(64);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let peer = stream.peer_addr().expect("peer");
                if accepted.send(peer).is_err() {
                    return;
                }
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 4096];
                    for answer in 1..=answers_per_connection {
                        let mut read = 0;
                        loop {
                            match stream.read(&mut buffer[read..]) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => read += n,
                            }
                            if buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                        let head = String::from_utf8_lossy(&buffer[..read]).to_string();
                        let body = head
                            .lines()
                            .find(|l| l.to_ascii_lowercase().starts_with("host:"));
                        let body = body.unwrap_or("no host").to_string();
                        let close = if answer == answers_per_connection {
                            "connection: close\r\n"
                        } else {
                            ""
                        };
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\n{close}content-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (address, connections)
    }

    fn request() -> Request<Full<Bytes>> {
        Request::post("/v1/chat/completions")
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("request")
    }

    async fn exchange(pool: &Http1Pool, address: &str) -> String {
        let response = pool.send(address, request()).await.expect("send");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8(body.to_vec()).expect("utf-8")
    }

    #[actix_rt::test]
    async fn a_connection_read_to_the_end_is_used_again_and_carries_the_host() {
        let (address, connections) = server(100);
        let pool = Http1Pool::new(Duration::from_secs(1));
        for _ in 0..3 {
            assert_eq!(exchange(&pool, &address).await, format!("host: {address}"));
            assert_eq!(pool.idle(&address), 1);
        }
        connections.try_recv().expect("one connection");
        assert!(
            connections.try_recv().is_err(),
            "a second connection was opened"
        );
    }

    #[actix_rt::test]
    async fn an_answer_dropped_unread_takes_its_connection_with_it() {
        let (address, connections) = server(100);
        let pool = Http1Pool::new(Duration::from_secs(1));
        let response = pool.send(&address, request()).await.expect("send");
        drop(response);
        assert_eq!(pool.idle(&address), 0);
        assert_eq!(exchange(&pool, &address).await, format!("host: {address}"));
        connections.try_recv().expect("first connection");
        connections.try_recv().expect("second connection");
    }

    #[actix_rt::test]
    async fn a_connection_the_upstream_closed_is_not_used() {
        // One answer per connection, which the server then closes.
        let (address, connections) = server(1);
        let pool = Http1Pool::new(Duration::from_secs(1));
        assert_eq!(exchange(&pool, &address).await, format!("host: {address}"));
        assert_eq!(exchange(&pool, &address).await, format!("host: {address}"));
        connections.try_recv().expect("first connection");
        connections.try_recv().expect("second connection");
    }

    /// The upstream closes idle connections at 5 s; one idle for 4 s is never used, so that
    /// close can never cross a request on the wire.
    #[actix_rt::test]
    async fn a_connection_idle_past_its_time_is_not_used() {
        let (address, connections) = server(100);
        let pool = Http1Pool::new(Duration::from_secs(1));
        exchange(&pool, &address).await;
        connections.try_recv().expect("first connection");
        {
            let host = pool.host(&address).expect("host");
            let mut idle = host.idle.borrow_mut();
            assert_eq!(idle.len(), 1);
            idle[0].since = Instant::now()
                .checked_sub(UPSTREAM_IDLE)
                .expect("the clock is past 4 s");
        }
        assert_eq!(exchange(&pool, &address).await, format!("host: {address}"));
        connections.try_recv().expect("a second connection");
        assert_eq!(
            pool.idle(&address),
            1,
            "the expired one was closed on the way"
        );
    }

    #[actix_rt::test]
    async fn connections_idle_past_their_time_are_swept() {
        let (address, _connections) = server(100);
        let pool = Http1Pool::new(Duration::from_secs(1));
        exchange(&pool, &address).await;
        assert_eq!(pool.idle(&address), 1);
        pool.inner.sweep(Instant::now());
        assert_eq!(pool.idle(&address), 1, "a fresh connection is kept");
        pool.inner.sweep(Instant::now() + UPSTREAM_IDLE);
        assert_eq!(pool.idle(&address), 0, "an expired connection is closed");
        assert!(
            pool.inner.hosts.borrow().is_empty(),
            "an endpoint with nothing left is forgotten"
        );
    }

    #[actix_rt::test]
    async fn a_refused_connect_is_a_connect_error() {
        let address = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address").to_string()
        };
        let pool = Http1Pool::new(Duration::from_secs(1));
        let error = pool.send(&address, request()).await.expect_err("refused");
        assert!(matches!(error, SendError::Connect(_)), "{error:?}");
    }

    #[actix_rt::test]
    async fn proxied_request_sockets_have_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let uri: Uri = format!("http://{address}/").parse().expect("uri");
        let pool = Http1Pool::new(Duration::from_secs(1));
        let mut connector = pool.inner.connector.clone();
        let connection = tower_service::Service::call(&mut connector, uri)
            .await
            .expect("connect");
        assert!(connection.inner().nodelay().expect("getsockopt"));
    }
}
