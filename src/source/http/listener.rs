//! The listening socket and its accept loop: at most `maxConnections`
//! connections are served at once. At the cap the loop stops accepting, so
//! further connections wait in the kernel's listen backlog (`backlog`)
//! and are taken in order as served ones close; each served connection
//! is bounded in time ([`conn`](super::conn)), so a slot is never held for
//! long by a client that sends nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::config::ConnectionLimits;
use super::conn;

/// At most one warning this often while connections wait at the cap.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// A listening socket on `addr` with a listen backlog of `backlog`.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std's and tokio's `bind` do: a restart can listen again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `app` (over TLS with `tls`) until `shutdown`, then lets each
/// connection finish its request in progress.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut warned: Option<Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned.is_none_or(|w| w.elapsed() >= CAP_WARNING_EVERY) {
                    warned = Some(Instant::now());
                    warn!(
                        max_connections = limits.max_connections,
                        "source.http: maxConnections reached; new connections wait in the listen backlog"
                    );
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    warn!(error = %e, "source.http: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        connections.spawn(conn::serve(
            tcp,
            tls.clone(),
            app.clone(),
            limits,
            shutdown.clone(),
            slot,
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}
