//! One client connection and its deadlines: the headers of each request
//! within `headerReadTimeout` (from the accept, the TLS handshake
//! included, or from the first byte of a later request), the next request
//! on a kept-alive connection within `idleTimeout`. Past a deadline the
//! connection is dropped (closed). While a request is being handled no
//! deadline runs here: the endpoint bounds the body (`bodyTimeout`).
//!
//! hyper's own `header_read_timeout` is not used: it starts again as soon
//! as a response is written, so it also bounds the wait between two
//! requests and an `idleTimeout` longer than it could never apply.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::config::ConnectionLimits;

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting for a request's headers, since then.
    Head(Instant),
    /// A request is being handled.
    Busy,
    /// Kept alive after an answer, since then.
    Idle(Instant),
}

/// A connection's phase, moved on by its reads and its requests.
struct Activity {
    phase: Mutex<Phase>,
    /// Woken when a deadline may have moved earlier or come back.
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Head(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().expect("phase lock")
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().expect("phase lock") = phase;
        self.changed.notify_one();
    }

    /// Bytes arrived: on an idle connection, a request begins.
    fn read_some(&self) {
        let mut phase = self.phase.lock().expect("phase lock");
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// When the connection is closed unless it moves on; `None` while a
    /// request is handled.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, &'static str)> {
        match self.phase() {
            Phase::Head(since) => Some((since + limits.header_read_timeout, "headerReadTimeout")),
            Phase::Idle(since) => Some((since + limits.idle_timeout, "idleTimeout")),
            Phase::Busy => None,
        }
    }
}

/// The socket, telling [`Activity`] when bytes arrive.
struct Watched {
    tcp: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.tcp).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.activity.read_some();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Serves one accepted connection until the client closes it, a deadline
/// passes or, at `shutdown`, its request in progress is answered. `_slot`
/// is its place under `maxConnections`, given back when this returns.
pub async fn serve(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = Watched {
        tcp,
        activity: activity.clone(),
    };
    match tls {
        None => drive(io, app, &limits, activity, shutdown).await,
        Some(acceptor) => {
            let handshake = acceptor.accept(io);
            let deadline = Instant::now() + limits.header_read_timeout;
            let tls = tokio::select! {
                done = tokio::time::timeout_at(deadline, handshake) => match done {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return debug!(error = %e, "source.http: TLS handshake failed"),
                    Err(_) => return debug!("source.http: TLS handshake not done within headerReadTimeout; closed"),
                },
                _ = shutdown.cancelled() => return,
            };
            drive(tls, app, &limits, activity, shutdown).await
        }
    }
}

async fn drive<I>(
    io: I,
    app: axum::Router,
    limits: &ConnectionLimits,
    activity: Arc<Activity>,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = TowerToHyperService::new(app);
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        use hyper::service::Service;
        tracked.set(Phase::Busy);
        let answer = app.call(request);
        let tracked = tracked.clone();
        async move {
            let response: Result<http::Response<Body>, _> = answer.await;
            tracked.set(Phase::Idle(Instant::now()));
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let changed = activity.changed.notified();
        let deadline = activity.deadline(limits);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = changed => {}
            _ = sleep_until(deadline.map(|(at, _)| at)) => {
                if let Some((at, limit)) = activity.deadline(limits)
                    && at <= Instant::now()
                {
                    return debug!("source.http: connection closed: {limit} passed");
                }
            }
            _ = shutdown.cancelled(), if !stopping => {
                if activity.phase() != Phase::Busy {
                    return;
                }
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::Semaphore;
    use tokio::task::JoinHandle;

    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        header_read_timeout: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(200),
        body_timeout: Duration::from_secs(1),
        max_connections: 1,
        backlog: 1,
    };

    const REQUEST: &[u8] = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";

    /// A client connected to [`serve`], whose handler takes `work`.
    async fn connection(
        work: Duration,
        shutdown: CancellationToken,
    ) -> (TcpStream, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move || async move {
                tokio::time::sleep(work).await;
                "done"
            }),
        );
        let slot = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        let server = tokio::spawn(serve(tcp, None, app, LIMITS, shutdown, slot));
        (client, server)
    }

    /// Everything the server sends until it closes the connection.
    async fn until_closed(client: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let _ = client.read_to_end(&mut got).await;
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_outlives_both_deadlines_then_the_idle_one_closes() {
        let (mut client, server) =
            connection(Duration::from_secs(5), CancellationToken::new()).await;
        let started = Instant::now();
        client.write_all(REQUEST).await.unwrap();
        let answer = until_closed(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        // Handled for 5 s (50 header timeouts), then idle until closed.
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5) + LIMITS.idle_timeout
        );
        server.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn headers_begun_after_an_answer_get_the_header_timeout() {
        let (mut client, server) = connection(Duration::ZERO, CancellationToken::new()).await;
        client.write_all(REQUEST).await.unwrap();
        let mut first = [0u8; 512];
        let n = client.read(&mut first).await.unwrap();
        assert!(first[..n].starts_with(b"HTTP/1.1 200"));
        // Idle for a while, then half a request: the header deadline runs
        // from its first byte, shorter than what was left of idleTimeout.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let begun = Instant::now();
        client.write_all(b"POST / HT").await.unwrap();
        assert_eq!(until_closed(&mut client).await, "");
        assert_eq!(begun.elapsed(), LIMITS.header_read_timeout);
        server.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn at_shutdown_a_request_in_progress_is_answered_an_idle_connection_closed_at_once() {
        let shutdown = CancellationToken::new();
        let (mut busy, server) = connection(Duration::from_secs(1), shutdown.clone()).await;
        busy.write_all(REQUEST).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        shutdown.cancel();
        let answer = until_closed(&mut busy).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.await.unwrap();

        let (mut waiting, server) = connection(Duration::ZERO, shutdown.clone()).await;
        let started = Instant::now();
        assert_eq!(until_closed(&mut waiting).await, "");
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "not held until a deadline"
        );
        server.await.unwrap();
    }
}
