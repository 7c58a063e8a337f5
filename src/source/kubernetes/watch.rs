//! One watched scope (a namespace, or all): list, then watch from the
//! list's `resourceVersion`; watch again from the last version seen when a
//! watch ends; list again when the API server answers `410 Gone`, sending
//! only objects not delivered yet (by uid, `resourceVersion` and count).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::{KubernetesSpec, WatchedKind};
use super::enrich::Enricher;
use super::objects::{health_event_document, identity, with_event_kind};
use super::position::{Change, Seen};
use crate::mapping::kubernetes::{event_time, occurrence};
use crate::source::Payload;
use crate::stats::SourceStats;

/// A change for the journal, with the record that makes it (none: a
/// checkpoint).
pub type Item = (Change, Payload);

/// Why a watch stopped.
enum Stop {
    /// The server ended it (its timeout): watch again from the last version.
    Renew,
    /// The version is too old (`410 Gone`): list again.
    Expired,
    /// Shutdown, or the pipeline is gone.
    Done,
}

/// `410 Gone` as an HTTP status (a watch request refused).
fn expired(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 410)
}

pub struct ScopeWatch {
    pub api: Api<DynamicObject>,
    /// The namespace, `""` for all.
    pub scope: String,
    pub spec: Arc<KubernetesSpec>,
    /// What was delivered (or is on its way), by uid.
    pub seen: HashMap<String, Seen>,
    pub resource_version: Option<String>,
    pub enricher: Option<Arc<Enricher>>,
    pub out: mpsc::Sender<Item>,
    pub shutdown: CancellationToken,
    pub stats: Arc<SourceStats>,
}

impl ScopeWatch {
    /// Lists and watches until shutdown; API errors are retried with backoff.
    pub async fn run(mut self) {
        let mut wait = Duration::from_millis(250);
        loop {
            let result = match self.resource_version.clone() {
                None => self.relist().await,
                Some(rv) => self.watch(&rv).await,
            };
            match result {
                Ok(Stop::Done) => return,
                Ok(Stop::Expired) => {
                    self.stats.tokens_lost.fetch_add(1, Ordering::Relaxed);
                    info!(scope = %self.scope_name(), "resourceVersion expired (410 Gone); listing again");
                    self.resource_version = None;
                }
                Ok(Stop::Renew) => wait = Duration::from_millis(250),
                Err(e) => {
                    if self.shutdown.is_cancelled() || self.out.is_closed() {
                        return;
                    }
                    self.stats.connected.store(false, Ordering::Relaxed);
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    warn!(scope = %self.scope_name(), error = %e, retry_in = ?wait, "Kubernetes API unavailable");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    fn scope_name(&self) -> &str {
        if self.scope.is_empty() {
            "all namespaces"
        } else {
            &self.scope
        }
    }

    /// Lists every object (page by page), sends the undelivered ones oldest
    /// first, then the list's version.
    async fn relist(&mut self) -> Result<Stop, String> {
        let mut params = ListParams::default().limit(self.spec.page_size);
        if let Some(l) = &self.spec.label_selector {
            params = params.labels(l);
        }
        if let Some(f) = &self.spec.field_selector {
            params = params.fields(f);
        }
        let mut items = Vec::new();
        let list_rv = loop {
            let page = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(Stop::Done),
                page = self.api.list(&params) => page,
            };
            // A continue token too old (410) also fails the list: it starts
            // again, from the first page, after the backoff.
            let page = page.map_err(|e| format!("list: {e}"))?;
            items.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params.continue_token = Some(token),
                None => break page.metadata.resource_version.unwrap_or_default(),
            }
        };
        self.stats.connected.store(true, Ordering::Relaxed);
        let mut objects: Vec<Value> = items
            .into_iter()
            .map(|o| serde_json::to_value(o).expect("objects serialise"))
            .collect();
        objects.sort_by_key(|o| self.sort_time(o));
        debug!(scope = %self.scope_name(), objects = objects.len(), resource_version = %list_rv, "listed");
        let mut keep = HashSet::with_capacity(objects.len());
        for obj in objects {
            if let Some((uid, _)) = identity(&obj) {
                keep.insert(uid.to_owned());
            }
            if !self.handle(obj, true).await {
                return Ok(Stop::Done);
            }
        }
        self.seen.retain(|uid, _| keep.contains(uid));
        let change = Change::Listed {
            scope: self.scope.clone(),
            keep: Arc::new(keep),
            rv: list_rv.clone(),
        };
        if self.out.send((change, Payload::Checkpoint)).await.is_err() {
            return Ok(Stop::Done);
        }
        self.resource_version = Some(list_rv);
        Ok(Stop::Renew)
    }

    fn sort_time(&self, obj: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
        match self.spec.kind {
            WatchedKind::Events => event_time(obj),
            WatchedKind::HealthEvents => obj
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.to_utc()),
        }
    }

    /// Watches from `rv` until the server ends the watch.
    async fn watch(&mut self, rv: &str) -> Result<Stop, String> {
        let mut params = WatchParams::default()
            .timeout(u32::try_from(self.spec.watch_timeout.as_secs()).unwrap_or(u32::MAX));
        if let Some(l) = &self.spec.label_selector {
            params = params.labels(l);
        }
        if let Some(f) = &self.spec.field_selector {
            params = params.fields(f);
        }
        let stream = tokio::select! {
            _ = self.shutdown.cancelled() => return Ok(Stop::Done),
            s = self.api.watch(&params, rv) => s,
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) if expired(&e) => return Ok(Stop::Expired),
            Err(e) => return Err(format!("watch: {e}")),
        };
        self.stats.connected.store(true, Ordering::Relaxed);
        let mut stream = std::pin::pin!(stream.map_err(|e| format!("watch: {e}")));
        loop {
            let event = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(Stop::Done),
                e = stream.next() => e,
            };
            let Some(event) = event else {
                debug!(scope = %self.scope_name(), "watch ended; renewing");
                return Ok(Stop::Renew);
            };
            let sent = match event? {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    let obj = serde_json::to_value(o).expect("objects serialise");
                    self.handle(obj, false).await
                }
                WatchEvent::Deleted(o) => self.deleted(&o).await,
                WatchEvent::Bookmark(b) => {
                    let rv = b.metadata.resource_version;
                    self.resource_version = Some(rv.clone());
                    let change = Change::Watched {
                        scope: self.scope.clone(),
                        rv,
                    };
                    self.out.send((change, Payload::Checkpoint)).await.is_ok()
                }
                WatchEvent::Error(status) if status.code == 410 => return Ok(Stop::Expired),
                WatchEvent::Error(status) => {
                    return Err(format!(
                        "watch: {} ({}: {})",
                        status.message, status.code, status.reason
                    ));
                }
            };
            if !sent {
                return Ok(Stop::Done);
            }
        }
    }

    /// Sends an added or modified object (or, if it was delivered
    /// already, only its version); false when the pipeline is gone.
    async fn handle(&mut self, mut obj: Value, listed: bool) -> bool {
        let Some((uid, rv)) = identity(&obj).map(|(u, r)| (u.to_owned(), r.to_owned())) else {
            warn!(scope = %self.scope_name(), "an object without uid or resourceVersion; skipped");
            return true;
        };
        let n = match self.spec.kind {
            WatchedKind::Events => occurrence(&obj),
            WatchedKind::HealthEvents => 0,
        };
        // Delivered already: the same version, or the same occurrence (an
        // Event's metadata changed, a health event's status).
        let delivered = self
            .seen
            .get(&uid)
            .is_some_and(|prev| prev.rv == rv || prev.n == n);
        let seen = Seen { rv: rv.clone(), n };
        self.seen.insert(uid.clone(), seen.clone());
        let scope = self.scope.clone();
        let change = if listed {
            Change::ListItem { scope, uid, seen }
        } else {
            self.resource_version = Some(rv);
            Change::Delivered { scope, uid, seen }
        };
        let payload = if delivered || self.too_old(&obj) {
            Payload::Checkpoint
        } else {
            self.payload(&mut obj).await
        };
        self.out.send((change, payload)).await.is_ok()
    }

    /// Older than `maxEventAgeSeconds`.
    fn too_old(&self, obj: &Value) -> bool {
        if self.spec.kind != WatchedKind::Events || self.spec.max_event_age.is_zero() {
            return false;
        }
        let Some(t) = event_time(obj) else {
            return false;
        };
        let age = chrono::Utc::now().signed_duration_since(t);
        age.to_std().is_ok_and(|age| age > self.spec.max_event_age)
    }

    /// The record: the Event (with its involved object's labels), or the
    /// health event as the document the `nvsentinel` mapping reads.
    async fn payload(&self, obj: &mut Value) -> Payload {
        match self.spec.kind {
            WatchedKind::Events => {
                with_event_kind(obj);
                if let Some(e) = &self.enricher {
                    e.enrich(obj).await;
                }
                Payload::Line(serde_json::to_vec(obj).expect("JSON serialises"))
            }
            WatchedKind::HealthEvents => match health_event_document(obj) {
                Ok(doc) => Payload::Line(serde_json::to_vec(&doc).expect("JSON serialises")),
                Err(e) => {
                    let name = obj
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("?");
                    Payload::Invalid(format!("HealthEventResource {name}: {e}"))
                }
            },
        }
    }

    async fn deleted(&mut self, obj: &DynamicObject) -> bool {
        let (Some(uid), Some(rv)) = (&obj.metadata.uid, &obj.metadata.resource_version) else {
            return true;
        };
        self.seen.remove(uid);
        self.resource_version = Some(rv.clone());
        let change = Change::Deleted {
            scope: self.scope.clone(),
            uid: uid.clone(),
            rv: rv.clone(),
        };
        self.out.send((change, Payload::Checkpoint)).await.is_ok()
    }
}
