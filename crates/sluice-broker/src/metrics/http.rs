//! The metrics endpoint: plain HTTP/1.1, where `GET /metrics` answers the exposition and every
//! other path `404 Not Found`. Scrapes are rare and small, so connections are few and capped.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

/// The one path served.
pub const METRICS_PATH: &str = "/metrics";
/// The exposition's media type: the OpenMetrics text format, which Prometheus scrapes natively.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Connections served at once; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;
/// A client must send its request headers within this long.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping waits for connections in flight to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds the metrics listener on `addr` (port 0 picks a free one).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Serves the endpoint on `listener` until `shutdown` resolves, then lets connections in
/// flight finish (for at most [`SHUTDOWN_GRACE`]). `render` produces the exposition per scrape.
pub async fn serve<R, F>(listener: TcpListener, render: R, shutdown: impl Future<Output = ()>)
where
    R: Fn() -> F + Clone + Send + Sync + 'static,
    F: Future<Output = String> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept(&listener, &permits) => accepted,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, permit)) => {
                connections.spawn(connection(stream, render.clone(), stopped.clone(), permit));
            }
            Err(e) => {
                tracing::warn!("metrics endpoint: accepting a connection failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    let _ = stop.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} });
    if drained.await.is_err() {
        tracing::warn!("metrics endpoint: connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
}

/// The next connection, once fewer than [`MAX_CONNECTIONS`] are open.
async fn accept(listener: &TcpListener, permits: &Arc<Semaphore>) -> io::Result<(TcpStream, OwnedSemaphorePermit)> {
    let permit = Arc::clone(permits).acquire_owned().await.expect("the semaphore is never closed");
    let (stream, _) = listener.accept().await?;
    Ok((stream, permit))
}

/// Serves one connection until the client closes it or the endpoint stops.
async fn connection<R, F>(
    stream: TcpStream,
    render: R,
    mut stopped: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) where
    R: Fn() -> F + Clone + Send + Sync + 'static,
    F: Future<Output = String> + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let render = render.clone();
        // Only the method and path are needed: the request (whose body is not `Sync`) is not
        // held across the render.
        let route = route(request.method(), request.uri().path());
        async move { Ok::<_, Infallible>(respond(route, render).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let stopping = async move {
        // The watch's read guard must not live across the graceful shutdown's await.
        let _ = stopped.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("metrics endpoint: connection ended with an error: {e}");
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
}

fn route(method: &Method, path: &str) -> Route {
    match (path == METRICS_PATH, method == Method::GET) {
        (false, _) => Route::NotFound,
        (true, false) => Route::MethodNotAllowed,
        (true, true) => Route::Metrics,
    }
}

/// The answer to a request for `route`.
async fn respond<R, F>(route: Route, render: R) -> Response<Full<Bytes>>
where
    R: Fn() -> F,
    F: Future<Output = String>,
{
    match route {
        Route::NotFound => plain(StatusCode::NOT_FOUND, "not found: metrics are at GET /metrics\n"),
        Route::MethodNotAllowed => {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
            response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET"));
            response
        }
        Route::Metrics => {
            let mut response = Response::new(Full::new(Bytes::from(render().await)));
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE));
            response
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Sends one request and returns the whole response as text.
    async fn get(addr: SocketAddr, method: &str, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut response)).await.unwrap().unwrap();
        response
    }

    #[tokio::test]
    async fn only_get_metrics_is_served_and_other_paths_are_not_found() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let render = || async { "up 1\n# EOF\n".to_owned() };
        let server = tokio::spawn(serve(listener, render, async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        }));

        let ok = get(addr, "GET", "/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(OPENMETRICS_CONTENT_TYPE), "{ok}");
        assert!(ok.ends_with("\r\n\r\nup 1\n# EOF\n"), "{ok}");
        for path in ["/", "/metrics/", "/metricsx", "/favicon.ico"] {
            let missing = get(addr, "GET", path).await;
            assert!(missing.starts_with("HTTP/1.1 404 Not Found\r\n"), "{path}: {missing}");
        }
        let post = get(addr, "POST", "/metrics").await;
        assert!(post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{post}");
        assert!(post.to_ascii_lowercase().contains("allow: get\r\n"), "{post}");

        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await.expect("the endpoint stops").unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
    }
}
