//! `source.kubernetes`: the YAML shape and its validation into a [`KubernetesSpec`].

use std::path::PathBuf;
use std::time::Duration as StdDuration;

use serde::Deserialize;

use crate::config::common::expanded;
use crate::config::common::{Diagnostics, Duration, Spanned};

/// `source.kubernetes`: list then watch Kubernetes objects, resuming from
/// the last finished `resourceVersion`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesSourceConfig {
    /// `events` (core `v1` Event objects, as kubernetes-event-exporter reads
    /// them) or `healthevents` (NVSentinel's `HealthEventResource` custom
    /// resources, group `healthevents.dgxc.nvidia.com`).
    pub kind: Spanned<String>,
    /// Watch only these namespaces (one watch each); empty: all namespaces.
    #[serde(default)]
    pub namespaces: Vec<Spanned<String>>,
    /// A label selector (`app=web,tier!=cache`), applied by the API server.
    #[serde(default)]
    pub label_selector: Option<Spanned<String>>,
    /// A field selector (`involvedObject.kind=Pod`), applied by the API server.
    #[serde(default)]
    pub field_selector: Option<Spanned<String>>,
    /// A kubeconfig file; without one the in-cluster service account is used.
    #[serde(default)]
    pub kubeconfig: Option<Spanned<String>>,
    /// The kubeconfig context; default its current context.
    #[serde(default)]
    pub context: Option<Spanned<String>>,
    /// Skip events whose last occurrence is older than this many seconds
    /// (kubernetes-event-exporter's `maxEventAgeSeconds`); 0: no limit.
    #[serde(default)]
    pub max_event_age_seconds: u64,
    /// Add the involved object's `labels` and `annotations` to each Event's
    /// `involvedObject` (one cached GET per object), as
    /// kubernetes-event-exporter does. `events` only.
    #[serde(default = "default_true")]
    pub involved_object_metadata: bool,
    /// How long the involved object's labels are cached.
    #[serde(default = "default_metadata_cache")]
    pub metadata_cache_ttl: Duration,
    /// Objects per page when listing.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// How long one watch request lasts before it is renewed.
    #[serde(default = "default_watch_timeout")]
    pub watch_timeout: Duration,
}

fn default_true() -> bool {
    true
}
fn default_metadata_cache() -> Duration {
    Duration::from_secs(60)
}
fn default_page_size() -> u32 {
    500
}
fn default_watch_timeout() -> Duration {
    Duration::from_secs(290)
}

/// What is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchedKind {
    Events,
    HealthEvents,
}

impl WatchedKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::HealthEvents => "healthevents",
        }
    }
}

/// A validated `source.kubernetes`.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesSpec {
    pub kind: WatchedKind,
    /// Empty: all namespaces.
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Zero: no limit.
    pub max_event_age: StdDuration,
    pub involved_object_metadata: bool,
    pub metadata_cache_ttl: StdDuration,
    pub page_size: u32,
    pub watch_timeout: StdDuration,
}

impl KubernetesSourceConfig {
    pub fn compile(&self, diags: &mut Diagnostics) -> Option<KubernetesSpec> {
        let place = "source.kubernetes";
        let kind = match self.kind.value.as_str() {
            "events" => Some(WatchedKind::Events),
            "healthevents" => Some(WatchedKind::HealthEvents),
            other => {
                diags.error(
                    Some(self.kind.referenced),
                    format!("{place}.kind: {other:?} is not one of: events, healthevents"),
                );
                None
            }
        };
        let mut namespaces = Vec::new();
        for ns in &self.namespaces {
            let Some(n) = expanded(ns, &format!("{place}.namespaces"), diags) else {
                continue;
            };
            if !is_dns_label(&n) {
                diags.error(
                    Some(ns.referenced),
                    format!("{place}.namespaces: {n:?} is not a namespace name"),
                );
            } else if namespaces.contains(&n) {
                diags.error(
                    Some(ns.referenced),
                    format!("{place}.namespaces: {n:?} is listed twice"),
                );
            } else {
                namespaces.push(n);
            }
        }
        let optional = |v: &Option<Spanned<String>>, key: &str, diags: &mut Diagnostics| {
            v.as_ref()
                .and_then(|v| expanded(v, &format!("{place}.{key}"), diags))
                .filter(|s| !s.trim().is_empty())
        };
        let label_selector = optional(&self.label_selector, "labelSelector", diags);
        let field_selector = optional(&self.field_selector, "fieldSelector", diags);
        let context = optional(&self.context, "context", diags);
        let kubeconfig = optional(&self.kubeconfig, "kubeconfig", diags).map(PathBuf::from);
        if context.is_some() && kubeconfig.is_none() {
            diags.error(
                self.context.as_ref().map(|c| c.referenced),
                format!("{place}.context: needs a kubeconfig"),
            );
        }
        if kind == Some(WatchedKind::HealthEvents) && self.max_event_age_seconds > 0 {
            diags.error(
                Some(self.kind.referenced),
                format!("{place}.maxEventAgeSeconds: applies to kind events only"),
            );
        }
        if self.page_size == 0 {
            diags.error(None, format!("{place}.pageSize: must be at least 1"));
        }
        if self.watch_timeout.0 < StdDuration::from_secs(1) {
            diags.error(None, format!("{place}.watchTimeout: must be at least 1s"));
        }
        Some(KubernetesSpec {
            kind: kind?,
            namespaces,
            label_selector,
            field_selector,
            kubeconfig,
            context,
            max_event_age: StdDuration::from_secs(self.max_event_age_seconds),
            involved_object_metadata: self.involved_object_metadata,
            metadata_cache_ttl: self.metadata_cache_ttl.0,
            page_size: self.page_size.max(1),
            watch_timeout: self.watch_timeout.0.max(StdDuration::from_secs(1)),
        })
    }
}

/// An RFC 1123 label: what a namespace name must be.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
