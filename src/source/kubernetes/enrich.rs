//! The involved object's labels and annotations, added to each Event as
//! kubernetes-event-exporter does, so routes can match on them. One GET
//! per object, cached; an object that is gone (or that this service
//! account may not read) leaves the Event as it is.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope};
use kube::{Client, discovery};
use serde_json::{Map, Value};
use tracing::{debug, warn};

/// Labels and annotations of one object.
type Metadata = Option<(Map<String, Value>, Map<String, Value>)>;

/// Objects kept at most; past it expired entries go, then all.
const MAX_ENTRIES: usize = 10_000;

pub struct Enricher {
    client: Client,
    ttl: Duration,
    objects: Mutex<HashMap<String, (Instant, Metadata)>>,
    resources: Mutex<HashMap<String, Option<(ApiResource, Scope)>>>,
    warned: AtomicBool,
}

impl Enricher {
    pub fn new(client: Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            objects: Mutex::default(),
            resources: Mutex::default(),
            warned: AtomicBool::new(false),
        }
    }

    /// Adds `labels` and `annotations` to the Event's `involvedObject`.
    pub async fn enrich(&self, event: &mut Value) {
        let Some(involved) = event.get("involvedObject") else {
            return;
        };
        let field = |k: &str| involved.get(k).and_then(Value::as_str).unwrap_or("");
        let (api_version, kind, namespace, name) = (
            field("apiVersion").to_owned(),
            field("kind").to_owned(),
            field("namespace").to_owned(),
            field("name").to_owned(),
        );
        if kind.is_empty() || name.is_empty() {
            return;
        }
        let key = format!("{api_version}/{kind}/{namespace}/{name}");
        let cached = {
            let objects = self.objects.lock().expect("cache lock");
            objects
                .get(&key)
                .filter(|(at, _)| at.elapsed() < self.ttl)
                .map(|(_, m)| m.clone())
        };
        let metadata = match cached {
            Some(m) => m,
            None => {
                let m = self.fetch(&api_version, &kind, &namespace, &name).await;
                let mut objects = self.objects.lock().expect("cache lock");
                if objects.len() >= MAX_ENTRIES {
                    objects.retain(|_, (at, _)| at.elapsed() < self.ttl);
                    if objects.len() >= MAX_ENTRIES {
                        objects.clear();
                    }
                }
                objects.insert(key, (Instant::now(), m.clone()));
                m
            }
        };
        if let (Some((labels, annotations)), Some(Value::Object(involved))) =
            (metadata, event.get_mut("involvedObject"))
        {
            involved.insert("labels".into(), Value::Object(labels));
            involved.insert("annotations".into(), Value::Object(annotations));
        }
    }

    async fn fetch(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Metadata {
        let (resource, scope) = self.resource(api_version, kind).await?;
        let api: Api<DynamicObject> = match scope {
            Scope::Namespaced if !namespace.is_empty() => {
                Api::namespaced_with(self.client.clone(), namespace, &resource)
            }
            _ => Api::all_with(self.client.clone(), &resource),
        };
        match api.get_opt(name).await {
            Ok(Some(obj)) => {
                let to_map = |m: Option<std::collections::BTreeMap<String, String>>| {
                    m.unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect::<Map<_, _>>()
                };
                Some((
                    to_map(obj.metadata.labels),
                    to_map(obj.metadata.annotations),
                ))
            }
            Ok(None) => {
                debug!(%kind, %namespace, %name, "involved object is gone");
                None
            }
            Err(e) => {
                self.warn_once(&format!("reading {kind} {namespace}/{name}: {e}"));
                None
            }
        }
    }

    /// The resource (plural, scope) of a kind, by discovery; cached.
    async fn resource(&self, api_version: &str, kind: &str) -> Option<(ApiResource, Scope)> {
        let key = format!("{api_version}/{kind}");
        if let Some(r) = self.resources.lock().expect("cache lock").get(&key) {
            return r.clone();
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = match discovery::pinned_kind(&self.client, &gvk).await {
            Ok((resource, caps)) => Some((resource, caps.scope)),
            Err(e) => {
                self.warn_once(&format!("discovering {api_version} {kind}: {e}"));
                None
            }
        };
        // A failed discovery is tried again with the next Event.
        if found.is_some() {
            self.resources
                .lock()
                .expect("cache lock")
                .insert(key, found.clone());
        }
        found
    }

    /// The first failure is a WARN (likely missing RBAC), the rest DEBUG.
    fn warn_once(&self, what: &str) {
        if self.warned.swap(true, Ordering::Relaxed) {
            debug!(error = %what, "involved object's labels unavailable");
        } else {
            warn!(error = %what, "involved object's labels unavailable; Events are exported without them (may the service account get that kind?)");
        }
    }
}
