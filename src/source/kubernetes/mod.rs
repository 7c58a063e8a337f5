//! `source.kubernetes`: core `v1` Events (what kubernetes-event-exporter
//! reads) or NVSentinel's `HealthEventResource` custom resources, listed
//! then watched.
//!
//! Each watched scope (a namespace, or all) resumes from the last finished
//! `resourceVersion`, persisted with what was delivered (uid →
//! `resourceVersion` and count). When that version is gone (`410 Gone`)
//! the scope is listed again and only objects not yet delivered are sent:
//! nothing is skipped "from now", nothing delivered is sent twice. A bump
//! of an Event's `count` is a new delivery, as in kubernetes-event-exporter.
//!
//! Scopes run concurrently and hand their records to one forwarder, which
//! numbers them in the order the pipeline receives them (`position.rs`).

mod config;
mod enrich;
pub(crate) mod objects;
mod position;
mod watch;

use std::sync::{Arc, Mutex};

use kube::api::{Api, ApiResource, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Client, Config};
use tokio::sync::mpsc;
use tracing::info;

pub use config::{KubernetesSourceConfig, KubernetesSpec, WatchedKind};
use position::{Journal, JournalStore, State};
use watch::{Item, ScopeWatch};

use super::{Record, Source, SourceContext, SourceError};
use crate::BoxFuture;
use crate::state::StateSpec;
use crate::state::{FileStore, PositionStore, StateError};

/// The health events' custom resource (NVSentinel ADR-027).
pub const HEALTH_EVENT_GROUP: &str = "healthevents.dgxc.nvidia.com";

pub struct KubernetesSource {
    spec: Arc<KubernetesSpec>,
    journal: Arc<Mutex<Journal>>,
}

impl KubernetesSource {
    pub fn new(spec: KubernetesSpec) -> Self {
        Self {
            spec: Arc::new(spec),
            journal: Arc::default(),
        }
    }

    /// The position file's name: what is watched, and how it is filtered.
    fn key(&self) -> String {
        use sha2::Digest;
        let s = &self.spec;
        let identity = format!(
            "{}\n{}\n{}\n{}\n{}",
            s.namespaces.join(","),
            s.label_selector.as_deref().unwrap_or(""),
            s.field_selector.as_deref().unwrap_or(""),
            s.kubeconfig
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            s.context.as_deref().unwrap_or(""),
        );
        let digest = sha2::Sha256::digest(identity.as_bytes());
        let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("kubernetes-{}-{short}", s.kind.name())
    }

    async fn client(&self) -> Result<Client, String> {
        let config = match &self.spec.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
                let options = KubeConfigOptions {
                    context: self.spec.context.clone(),
                    ..Default::default()
                };
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
            }
            None => Config::incluster()
                .map_err(|e| format!("no kubeconfig set and not running in a cluster: {e}"))?,
        };
        Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
    }

    fn resource(&self) -> ApiResource {
        match self.spec.kind {
            WatchedKind::Events => ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("", "v1", "Event"),
                "events",
            ),
            WatchedKind::HealthEvents => ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(HEALTH_EVENT_GROUP, "v1", "HealthEventResource"),
                "healtheventresources",
            ),
        }
    }
}

impl Source for KubernetesSource {
    fn position_store(
        &self,
        state: &StateSpec,
    ) -> Result<Option<Arc<dyn PositionStore>>, StateError> {
        Ok(Some(Arc::new(JournalStore {
            file: FileStore::open(&state.dir, &self.key())?,
            journal: self.journal.clone(),
        })))
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            let failed = |reason| SourceError::Setup {
                what: "source.kubernetes",
                reason,
            };
            let state = State::from_json(ctx.start.as_ref()).map_err(failed)?;
            *self.journal.lock().expect("journal lock") = Journal::new(state.clone());
            let client = self.client().await.map_err(failed)?;
            let resource = self.resource();
            let enricher = (self.spec.kind == WatchedKind::Events
                && self.spec.involved_object_metadata)
                .then(|| {
                    Arc::new(enrich::Enricher::new(
                        client.clone(),
                        self.spec.metadata_cache_ttl,
                    ))
                });
            let scopes = if self.spec.namespaces.is_empty() {
                vec![String::new()]
            } else {
                self.spec.namespaces.clone()
            };
            info!(kind = self.spec.kind.name(), namespaces = ?self.spec.namespaces, "watching Kubernetes");

            let (tx, rx) = mpsc::channel::<Item>(64);
            let tasks = tokio_util::task::TaskTracker::new();
            for scope in scopes {
                let api = if scope.is_empty() {
                    Api::<DynamicObject>::all_with(client.clone(), &resource)
                } else {
                    Api::namespaced_with(client.clone(), &scope, &resource)
                };
                let persisted = state.scopes.get(&scope).cloned().unwrap_or_default();
                tasks.spawn(
                    ScopeWatch {
                        api,
                        scope,
                        spec: self.spec.clone(),
                        seen: persisted.delivered,
                        resource_version: persisted.resource_version,
                        enricher: enricher.clone(),
                        out: tx.clone(),
                        shutdown: ctx.shutdown.clone(),
                        stats: ctx.stats.clone(),
                    }
                    .run(),
                );
            }
            tasks.close();
            drop(tx);
            // Ends once every scope stopped (shutdown), or the pipeline is gone.
            forward(rx, &self.journal, &ctx).await;
            tasks.wait().await;
            Ok(())
        })
    }
}

/// Numbers each record in the order the pipeline receives it.
async fn forward(mut rx: mpsc::Receiver<Item>, journal: &Mutex<Journal>, ctx: &SourceContext) {
    while let Some((change, payload)) = rx.recv().await {
        let position = journal.lock().expect("journal lock").push(change);
        let record = Record {
            payload,
            position: Some(position),
            done: None,
        };
        if ctx.out.send(record).await.is_err() {
            return;
        }
    }
}
