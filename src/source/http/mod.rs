//! `source.http`: CloudEvents pushed over HTTP (structured, binary and batch
//! mode, the binding the `http` receiver writes).
//!
//! Durability: a request is answered 202 only once its events are appended
//! to a journal in the state directory and fsynced (requests arriving
//! during a sync share the next one). A reader in the same source feeds
//! the journal to the pipeline, each event's position the journal offset
//! after it, so the persisted position passes only finished events; after a
//! crash the journal is read again from there. Segments wholly behind the
//! persisted position are deleted (this source learns of each save through
//! its [`PositionStore`] wrapper). Events accepted and not finished are
//! bounded by `maxQueuedEvents`: past it requests are answered 503 with
//! `Retry-After`, so the senders keep them.

mod auth;
pub(crate) mod check;
pub mod config;
mod conn;
pub(crate) mod decode;
mod listener;
mod reader;
mod server;
#[cfg(test)]
mod tests;
mod tls;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::{Source, SourceContext, SourceError};
use crate::BoxFuture;
use crate::journal;
use crate::state::StateSpec;
use crate::state::{FileStore, PositionStore, StateError};
use config::HttpSourceSpec;

/// Requests waiting for the journal writer.
const APPEND_QUEUE: usize = 1024;

pub struct HttpSource {
    spec: HttpSourceSpec,
    /// The journal's directory, known once the state is.
    dir: Mutex<Option<PathBuf>>,
    /// The last persisted journal offset.
    persisted: Arc<watch::Sender<u64>>,
}

impl HttpSource {
    pub fn new(spec: HttpSourceSpec) -> Self {
        Self {
            spec,
            dir: Mutex::default(),
            persisted: Arc::new(watch::Sender::new(0)),
        }
    }
}

/// The position file, telling the source what was saved.
struct Tracked {
    inner: FileStore,
    persisted: Arc<watch::Sender<u64>>,
}

impl PositionStore for Tracked {
    fn load(&self) -> BoxFuture<'_, Result<Option<Value>, StateError>> {
        self.inner.load()
    }

    fn save<'a>(&'a self, position: &'a Value) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            self.inner.save(position).await?;
            if let Some(offset) = position.get("offset").and_then(Value::as_u64) {
                self.persisted.send_replace(offset);
            }
            Ok(())
        })
    }
}

impl Source for HttpSource {
    fn position_store(
        &self,
        state: &StateSpec,
    ) -> Result<Option<Arc<dyn PositionStore>>, StateError> {
        *self.dir.lock().expect("dir lock") = Some(state.dir.join("http-journal"));
        Ok(Some(Arc::new(Tracked {
            inner: FileStore::open(&state.dir, "http")?,
            persisted: self.persisted.clone(),
        })))
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(self.serve(ctx))
    }
}

/// A position read back from the state store.
fn saved_position(start: &Option<Value>) -> Option<(u64, u64)> {
    let v = start.as_ref()?;
    Some((v.get("stream")?.as_u64()?, v.get("offset")?.as_u64()?))
}

impl HttpSource {
    async fn serve(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let spec = &self.spec;
        let dir = self
            .dir
            .lock()
            .expect("dir lock")
            .clone()
            .unwrap_or_else(|| PathBuf::from("http-journal"));
        let io = |what, source| SourceError::Io {
            what,
            path: dir.display().to_string(),
            source,
        };
        let segment_bytes = spec.segment_bytes;
        let open_dir = dir.clone();
        let (writer, start, queued) = tokio::task::spawn_blocking(move || {
            let writer = journal::open(&open_dir, segment_bytes)?;
            let journal = writer.shared().clone();
            let (first, end) = (journal.first(), *journal.durable.borrow());
            let start = match saved_position(&ctx.start) {
                Some((id, offset)) if id == journal.id && journal.is_line_start(offset) => offset,
                Some(_) => {
                    warn!(journal = %open_dir.display(), "the saved position is not where a line starts in this journal; reading it from its oldest segment");
                    first
                }
                None => first,
            };
            let queued = journal.count_lines(start, end)?;
            Ok::<_, std::io::Error>((writer, start, queued))
        })
        .await
        .expect("journal open does not panic")
        .map_err(|e| io("cannot open the journal", e))?;
        let journal = writer.shared().clone();
        if queued > 0 {
            info!(
                events = queued,
                offset = start,
                "journal: resuming accepted events not yet delivered"
            );
        }

        let auth = auth::Authenticator::new(&spec.auth)
            .map_err(|e| io("token introspection client for", std::io::Error::other(e)))?;
        if matches!(spec.auth, config::AuthSpec::Open) {
            warn!(listen = %spec.listen, "source.http has no auth: anyone who reaches it can send events");
        }
        let listener =
            listener::bind(spec.listen, spec.limits.backlog).map_err(|e| SourceError::Io {
                what: "cannot listen on",
                path: spec.listen.to_string(),
                source: e,
            })?;
        let listen = listener.local_addr().unwrap_or(spec.listen);
        let tls = match &spec.tls {
            None => None,
            Some(t) => Some(
                tls::acceptor(t)
                    .map_err(|e| io("TLS certificate for", std::io::Error::other(e)))?,
            ),
        };

        let backlog = Arc::new(reader::Backlog::new(queued, spec.max_queued_events));
        let (appends, requests) = mpsc::channel(APPEND_QUEUE);
        let writer_task = tokio::spawn(writer.run(requests));
        let cleaner = tokio::spawn(clean(journal.clone(), self.persisted.subscribe()));
        let reader_task = tokio::spawn(reader::read(
            journal.clone(),
            start,
            ctx.out.clone(),
            backlog.clone(),
            ctx.shutdown.clone(),
        ));
        let app = server::router(
            &spec.path,
            server::Endpoint {
                auth: Arc::new(auth),
                journal: appends,
                backlog: backlog.clone(),
                max_body: spec.max_body_bytes,
                body_timeout: spec.limits.body_timeout,
            },
        );
        ctx.stats.connected.store(true, Ordering::Relaxed);
        info!(listen = %listen, path = %spec.path, tls = tls.is_some(), "source.http accepting CloudEvents");
        listener::serve(listener, app, tls, spec.limits, ctx.shutdown.clone()).await;
        ctx.stats.connected.store(false, Ordering::Relaxed);
        // The last requests are journaled before the writer stops.
        let _ = writer_task.await;
        let read = reader_task.await.expect("journal reader does not panic");
        cleaner.abort();
        info!(
            unfinished = backlog.queued(),
            "source.http stopped; unfinished events are read from the journal on the next start"
        );
        read
    }
}

/// Deletes segments behind each persisted position.
async fn clean(journal: Arc<journal::Shared>, mut persisted: watch::Receiver<u64>) {
    while persisted.changed().await.is_ok() {
        let offset = *persisted.borrow_and_update();
        let journal = journal.clone();
        let _ = tokio::task::spawn_blocking(move || journal.release_before(offset)).await;
    }
}
