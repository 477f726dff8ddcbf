//! Per-worker upstream clients: the HTTP/1.1 connection pools for proxied requests
//! ([`Http1Pool`]), awc for health checks and model lists, and the gRPC channels beside them.
//! Every worker thread owns its clients and their connection pools (awc is single-threaded,
//! and hyper's connection tasks run on the worker that opened them); nothing here is shared
//! across threads.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use actix_service::{Service, ServiceExt};
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, Connector, Resolver};
use actix_web::rt::net::TcpStream;
use awc::http::Uri;

use super::http1::Http1Pool;
use super::GrpcChannels;

/// Idle keep-alive connections are closed after this long (awc: probes, model lists, Consul).
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// awc connections are recycled after this long even when busy, so DNS changes are seen.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// A TCP connector that turns Nagle's algorithm off on every upstream socket. awc buffers a
/// request's head with its body and writes them together, but any write that follows an
/// unacknowledged small one (a streamed request body, the next request on a keep-alive
/// connection racing a delayed ACK) would otherwise wait up to 40 ms.
pub fn nodelay_connector(
) -> impl Service<ConnectInfo<Uri>, Response = Connection<Uri, TcpStream>, Error = ConnectError> + Clone
{
    Connector::new(Resolver::default())
        .service()
        .map(|connection: Connection<Uri, TcpStream>| {
            if let Err(error) = connection.io_ref().set_nodelay(true) {
                tracing::warn!(%error, "cannot set TCP_NODELAY on an upstream connection");
            }
            connection
        })
}

/// The server-side twin: `HttpServer::on_connect` hands every accepted connection here.
pub fn set_server_nodelay(connection: &dyn Any) {
    if let Some(stream) = connection.downcast_ref::<TcpStream>() {
        let _ = stream.set_nodelay(true);
    }
}

fn build_client(connect_timeout: Duration) -> awc::Client {
    let connector = awc::Connector::new()
        .connector(nodelay_connector())
        .timeout(connect_timeout)
        // Streams hold connections for minutes; the default cap of 100 would queue the 101st.
        .limit(0)
        .conn_keep_alive(KEEP_ALIVE)
        .conn_lifetime(CONNECTION_LIFETIME);
    awc::Client::builder()
        .connector(connector)
        .disable_timeout()
        .disable_redirects()
        .no_default_headers()
        .finish()
}

/// One client per distinct connect timeout (usually one in all), created on first use.
pub struct UpstreamClients {
    clients: RefCell<HashMap<Duration, awc::Client>>,
    /// Searched in order on every proxied request: there is one entry per connect timeout
    /// (usually one in all), so a scan beats hashing the key.
    http: RefCell<Vec<(Duration, Http1Pool)>>,
    /// `None` when protocol conversion is off: gRPC endpoints are then refused.
    grpc: Option<GrpcChannels>,
}

impl Default for UpstreamClients {
    fn default() -> Self {
        UpstreamClients::new(true)
    }
}

impl UpstreamClients {
    pub fn new(grpc_enabled: bool) -> Self {
        UpstreamClients {
            clients: RefCell::default(),
            http: RefCell::default(),
            grpc: grpc_enabled.then(GrpcChannels::default),
        }
    }

    /// The gRPC channels, unless protocol conversion is switched off.
    pub fn grpc(&self) -> Option<&GrpcChannels> {
        self.grpc.as_ref()
    }

    /// The connection pool for proxied requests.
    pub fn http(&self, connect_timeout: Duration) -> Http1Pool {
        let mut pools = self.http.borrow_mut();
        if let Some((_, pool)) = pools.iter().find(|(t, _)| *t == connect_timeout) {
            return pool.clone();
        }
        let pool = Http1Pool::new(connect_timeout);
        pools.push((connect_timeout, pool.clone()));
        pool
    }

    /// The awc client, for health checks and model lists.
    pub fn get(&self, connect_timeout: Duration) -> awc::Client {
        self.clients
            .borrow_mut()
            .entry(connect_timeout)
            .or_insert_with(|| build_client(connect_timeout))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn upstream_sockets_have_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let uri: Uri = format!("http://{address}/").parse().expect("uri");
        let connector = nodelay_connector();
        let connection = connector
            .call(ConnectInfo::new(uri))
            .await
            .expect("connect");
        assert!(connection.io_ref().nodelay().expect("getsockopt"));
    }

    #[actix_rt::test]
    async fn accepted_sockets_get_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let client = std::net::TcpStream::connect(address).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        accepted.set_nonblocking(true).expect("nonblocking");
        let stream = TcpStream::from_std(accepted).expect("tokio stream");
        assert!(!stream.nodelay().expect("getsockopt"));
        set_server_nodelay(&stream);
        assert!(stream.nodelay().expect("getsockopt"));
        drop(client);
    }
}
