//! Transforms: WebAssembly plugins (world `transform`) that filter, modify
//! or split events — globally, after mapping and before routing, or per
//! receiver, before delivery. Steps run in config order; each step's output
//! events are the next step's input.
//!
//! A failing step (an error value, a trap, a timeout, a memory overrun,
//! malformed output) follows its `onError` policy: `drop` the event,
//! `pass` it on unchanged, or `deadLetter` it (the default) into a dead
//! letter file before it counts as finished.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use serde::Deserialize;
use tracing::{error, warn};

use crate::config::common::{Diagnostics, Spanned};
use crate::deadletter::DeadLetterConfig;
use crate::deadletter::DeadLetters;
use crate::event::{AttributesReader, Event};
use crate::plugin::config::{DEFAULT_TRANSFORM_TIMEOUT, WasmConfig};
use crate::plugin::{Plugin, PluginSpec, Plugins, World};
use crate::stats::Stats;

/// An entry of `transforms:` (global or per receiver).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransformConfig {
    /// A WebAssembly component implementing the `transform` world.
    pub wasm: Spanned<WasmConfig>,
    /// What happens to an event the plugin fails on: `deadLetter` (default),
    /// `drop` or `pass` (on unchanged).
    #[serde(default)]
    pub on_error: OnError,
    /// The dead letter file for `onError: deadLetter`; a receiver's
    /// transforms default to the receiver's `deadLetter`.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
}

/// A transform's failure policy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnError {
    /// Write the event (as it was before this step) to the dead letter file.
    #[default]
    DeadLetter,
    /// Drop the event (logged and counted).
    Drop,
    /// Pass the event on unchanged, as if the step were not there.
    Pass,
}

/// A validated transform step.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformSpec {
    pub plugin: PluginSpec,
    pub on_error: OnError,
    pub dead_letter: Option<PathBuf>,
}

impl TransformConfig {
    /// Validates the step at `place` (`transforms[0]`); `fallback` is the
    /// receiver's dead letter file, if any.
    pub fn compile(
        &self,
        place: &str,
        fallback: Option<&PathBuf>,
        diags: &mut Diagnostics,
    ) -> Option<TransformSpec> {
        let plugin =
            self.wasm
                .value
                .compile(&format!("{place}.wasm"), DEFAULT_TRANSFORM_TIMEOUT, diags);
        let dead_letter = match &self.dead_letter {
            Some(d) => match crate::config::common::expand(&d.file.value) {
                Ok(v) => Some(PathBuf::from(v.into_owned())),
                Err(e) => {
                    diags.error(
                        Some(d.file.referenced),
                        format!("{place}.deadLetter.file: {e}"),
                    );
                    return None;
                }
            },
            None => fallback.cloned(),
        };
        if self.on_error == OnError::DeadLetter && dead_letter.is_none() {
            diags.error(
                Some(self.wasm.referenced),
                format!(
                    "{place}: onError is deadLetter (the default) but no dead letter file is set; \
                     set {place}.deadLetter.file (or the receiver's deadLetter), or onError: drop | pass"
                ),
            );
            return None;
        }
        Some(TransformSpec {
            plugin: plugin?,
            on_error: self.on_error,
            dead_letter,
        })
    }
}

/// Transform specs with the world they must implement, for [`Plugins::load`].
pub fn plugin_specs(specs: &[TransformSpec]) -> impl Iterator<Item = (&PluginSpec, World)> {
    specs.iter().map(|s| (&s.plugin, World::Transform))
}

struct Step {
    plugin: Arc<crate::plugin::Plugin>,
    place: String,
    on_error: OnError,
    dead_letters: Option<DeadLetters>,
}

/// A list of transform steps, ready to run.
#[derive(Default)]
pub struct Chain {
    steps: Vec<Step>,
}

impl Chain {
    /// The chain for `specs`, with their plugins from `plugins`.
    pub fn new(specs: &[TransformSpec], plugins: &Plugins) -> Self {
        let steps = specs
            .iter()
            .map(|s| Step {
                plugin: plugins
                    .get(&s.plugin.place)
                    .expect("every transform plugin is loaded before the chain is built"),
                place: s.plugin.place.trim_end_matches(".wasm").to_owned(),
                on_error: s.on_error,
                dead_letters: s.dead_letter.clone().map(DeadLetters::new),
            })
            .collect();
        Self { steps }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The plugins of the steps, in order.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.steps.iter().map(|s| &s.plugin)
    }

    /// Runs `event` through every step: 0, 1 or more events out. Failures
    /// are handled here by each step's policy (dead letters are written
    /// before this returns).
    pub async fn apply(&self, event: Event, stats: &Stats) -> Vec<Event> {
        let mut events = vec![event];
        for step in &self.steps {
            let mut next = Vec::with_capacity(events.len());
            for event in events {
                match step.plugin.transform(event).await {
                    Ok(out) => {
                        if out.is_empty() {
                            stats.filtered.fetch_add(1, Ordering::Relaxed);
                        }
                        next.extend(out);
                    }
                    Err((event, failure)) => {
                        stats.transform_failures.fetch_add(1, Ordering::Relaxed);
                        let reason = format!(
                            "transform {} ({}) {failure}",
                            step.place,
                            step.plugin.name()
                        );
                        match step.on_error {
                            OnError::Pass => {
                                warn!(event_id = %event.id(), %reason, "transform failed; event passed on unchanged (onError: pass)");
                                next.push(event);
                            }
                            OnError::Drop => {
                                stats.transform_dropped.fetch_add(1, Ordering::Relaxed);
                                warn!(event_id = %event.id(), %reason, "transform failed; event dropped (onError: drop)");
                            }
                            OnError::DeadLetter => step.dead_letter(&event, &reason, stats).await,
                        }
                    }
                }
            }
            events = next;
            if events.is_empty() {
                break;
            }
        }
        events
    }
}

impl Step {
    async fn dead_letter(&self, event: &Event, reason: &str, stats: &Stats) {
        let dead_letters = self
            .dead_letters
            .as_ref()
            .expect("validation requires a dead letter file for onError: deadLetter");
        let now = Utc::now();
        let mut wait = std::time::Duration::from_millis(100);
        while let Err(e) = dead_letters
            .write(&self.place, &[event], reason, 1, now, now)
            .await
        {
            error!(transform = %self.place, file = %dead_letters.path().display(), error = %e, retry_in = ?wait, "cannot write dead letters; will retry");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(30));
        }
        stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        warn!(transform = %self.place, event_id = %event.id(), %reason, file = %dead_letters.path().display(), "transform failed; event dead-lettered");
    }
}
