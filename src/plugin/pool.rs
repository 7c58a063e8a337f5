//! A loaded plugin ([`super::load`] made it): its compiled component,
//! pre-linked, and a pool of idle instances. A call takes an instance (or
//! makes one), arms the deadline, calls, and puts the instance back —
//! unless the call trapped, timed out or overran its memory, in which case
//! the instance is dropped.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};
use wasmtime::{Store, UpdateDeadline};

use super::bindings::sink::{Sink as SinkBindings, SinkPre};
use super::bindings::switchyard::plugin::types::{CloudEvent, Delivery};
use super::bindings::{Transform as TransformBindings, TransformPre};
use super::engine::{self, Loaded};
use super::host::{HostState, MemoryExceeded};
use super::load::{World, root};
use super::{PluginInfo, PluginStats, convert};
use crate::event::{AttributesReader, Data, Event};

/// How a call went wrong. Every kind but `Error` and `Malformed` ends the
/// instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The guest returned an error value (`result::err`).
    #[error("returned an error: {0}")]
    Error(String),
    /// The guest returned events that are not valid CloudEvents.
    #[error("{0}")]
    Malformed(String),
    /// A trap: a guest panic, `unreachable`, an out-of-bounds access …
    #[error("trapped: {0}")]
    Trap(String),
    /// Still running at its deadline; interrupted.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Tried to grow its memory past the limit.
    #[error("exceeded its memory limit ({0} bytes)")]
    MemoryLimit(u64),
    /// A fresh instance could not be made.
    #[error("cannot be instantiated: {0}")]
    Instantiate(String),
}

pub(super) enum Pre {
    Transform(TransformPre<HostState>),
    Sink(SinkPre<HostState>),
}

enum Bindings {
    Transform(TransformBindings),
    Sink(SinkBindings),
}

pub(super) struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    /// Calls this instance completed.
    served: u64,
}

/// A call into a plugin: the export and its arguments.
#[derive(Clone, Copy)]
enum Call<'a> {
    Transform(&'a CloudEvent),
    Deliver(&'a [CloudEvent]),
}

/// What the export returned.
enum Answer {
    Transform(Result<Vec<CloudEvent>, String>),
    Deliver(Delivery),
}

impl Instance {
    async fn invoke(&mut self, call: Call<'_>) -> wasmtime::Result<Answer> {
        match (&self.bindings, call) {
            (Bindings::Transform(b), Call::Transform(event)) => b
                .call_transform(&mut self.store, event)
                .await
                .map(Answer::Transform),
            (Bindings::Sink(b), Call::Deliver(events)) => b
                .call_deliver(&mut self.store, events)
                .await
                .map(Answer::Deliver),
            _ => unreachable!("a plugin is only called through the world it implements"),
        }
    }
}

/// Idle instances kept per plugin; more are made when calls overlap.
const MAX_IDLE: usize = 8;

/// Grace beyond the timeout for a call blocked in the host (e.g. waiting on
/// `wasi:http`), where epoch ticks cannot interrupt it.
const HOST_GRACE: Duration = engine::TICK;

/// A loaded plugin.
pub struct Plugin {
    pub(super) info: Arc<PluginInfo>,
    pub(super) world: World,
    pub(super) pre: Pre,
    pub(super) idle: Mutex<Vec<Instance>>,
    pub(super) imports: Vec<String>,
    pub(super) loaded: Loaded,
    /// SHA-256 of the component file: a reload keeps a receiver whose
    /// plugin file is unchanged.
    pub(super) digest: [u8; 32],
    /// Whether a call can wait in the host (it imports `wasi:io/poll` or
    /// `wasi:http`), where epoch ticks do not reach it: such calls also run
    /// under a timer.
    pub(super) can_block: bool,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("info", &self.info)
            .field("world", &self.world)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    pub fn name(&self) -> &str {
        &self.info.name
    }

    pub fn world(&self) -> World {
        self.world
    }

    /// Where the plugin is used in the config it was loaded for.
    pub fn place(&self) -> &str {
        &self.info.place
    }

    /// SHA-256 of the component file.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The component's imports (interface names with versions).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Whether the code came from the cache.
    pub fn loaded(&self) -> Loaded {
        self.loaded
    }

    pub fn stats(&self) -> &PluginStats {
        &self.info.stats
    }

    /// Idle instances in the pool.
    pub fn idle(&self) -> usize {
        self.idle.lock().expect("pool lock").len()
    }

    /// Makes idle instances until there are `n` (at most the pool's size
    /// of 8): a sink with concurrent deliveries starts with one per slot.
    pub async fn prefill(&self, n: usize) -> Result<(), Failure> {
        while self.idle() < n.min(MAX_IDLE) {
            let instance = self.instantiate().await?;
            self.idle.lock().expect("pool lock").push(instance);
        }
        Ok(())
    }

    fn new_store(&self) -> Store<HostState> {
        let mut store = Store::new(engine::engine(), HostState::new(self.info.clone()));
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                return Err(DeadlineExceeded.into());
            }
            // Let other tasks of the runtime run, then check again next tick.
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    pub(super) async fn instantiate(&self) -> Result<Instance, Failure> {
        self.info.stats.instances.fetch_add(1, Ordering::Relaxed);
        let mut store = self.new_store();
        store.data_mut().deadline = Instant::now() + self.info.limits.timeout.max(INSTANTIATE_MIN);
        store.set_epoch_deadline(1);
        let made = match &self.pre {
            Pre::Transform(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Bindings::Transform),
            Pre::Sink(pre) => pre.instantiate_async(&mut store).await.map(Bindings::Sink),
        };
        match made {
            Ok(bindings) => Ok(Instance {
                store,
                bindings,
                served: 0,
            }),
            Err(e) => Err(Failure::Instantiate(self.classify(&store, &e).to_string())),
        }
    }

    /// The failure an error of a call stands for.
    fn classify(&self, store: &Store<HostState>, e: &wasmtime::Error) -> Failure {
        if store.data().limits.exceeded || e.downcast_ref::<MemoryExceeded>().is_some() {
            Failure::MemoryLimit(self.info.limits.memory)
        } else if e.downcast_ref::<DeadlineExceeded>().is_some() {
            Failure::Timeout(self.info.limits.timeout)
        } else if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
            Failure::Trap(trap.to_string())
        } else {
            Failure::Trap(root(e))
        }
    }

    /// Runs `call` on an instance with the deadline armed; counts and
    /// classifies failures; returns healthy instances to the pool.
    ///
    /// A call that overran the memory limit on an instance that had served
    /// earlier calls is tried once more on a fresh instance when `again` is
    /// set (transforms: a pure function of the event): the memory may have
    /// been used up by earlier calls, not by this event.
    async fn call(&self, again: bool, call: Call<'_>) -> Result<Answer, Failure> {
        let stats = &self.info.stats;
        let mut started = None;
        let mut retried = false;
        let failure = loop {
            stats.calls.fetch_add(1, Ordering::Relaxed);
            let idle = self.idle.lock().expect("pool lock").pop();
            let mut instance = match idle {
                Some(i) => i,
                None => match self.instantiate().await {
                    Ok(i) => i,
                    Err(f) => break f,
                },
            };
            let timeout = self.info.limits.timeout;
            let now = Instant::now();
            let started = *started.get_or_insert(now);
            instance.store.data_mut().deadline = now + timeout;
            instance.store.set_epoch_deadline(1);
            let result = if self.can_block {
                tokio::time::timeout(timeout + HOST_GRACE, instance.invoke(call)).await
            } else {
                Ok(instance.invoke(call).await)
            };
            let failure = match result {
                Ok(Ok(value)) => {
                    instance.served += 1;
                    self.release(instance);
                    stats
                        .call_nanos
                        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    return Ok(value);
                }
                Ok(Err(e)) => self.classify(&instance.store, &e),
                // Dropped mid-call (blocked in the host): the instance is unusable.
                Err(_) => Failure::Timeout(timeout),
            };
            if again
                && !retried
                && instance.served > 0
                && matches!(failure, Failure::MemoryLimit(_))
            {
                stats.recycled.fetch_add(1, Ordering::Relaxed);
                debug!(plugin = %self.info.name, served = instance.served, "memory limit reached after earlier calls; trying once more on a fresh instance");
                retried = true;
                continue;
            }
            break failure;
        };
        if let Some(started) = started {
            stats
                .call_nanos
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        self.count(&failure);
        warn!(plugin = %self.info.name, error = %failure, "plugin call failed; its instance is replaced");
        Err(failure)
    }

    /// Back to the pool after a successful call, unless the pool is full or
    /// the instance holds most of its memory limit (then it is retired).
    fn release(&self, instance: Instance) {
        if instance.store.data().limits.nearly_full() {
            self.info.stats.recycled.fetch_add(1, Ordering::Relaxed);
            debug!(plugin = %self.info.name, served = instance.served, "instance retired: it holds most of its memory limit");
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < MAX_IDLE {
            idle.push(instance);
        }
    }

    fn count(&self, failure: &Failure) {
        let stats = &self.info.stats;
        let counter = match failure {
            Failure::Error(_) => &stats.errors,
            Failure::Malformed(_) => &stats.malformed,
            Failure::Trap(_) | Failure::Instantiate(_) => &stats.traps,
            Failure::Timeout(_) => &stats.timeouts,
            Failure::MemoryLimit(_) => &stats.memory_limits,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls a transform with `event`. On failure the event comes back
    /// unchanged with the reason, for the caller's `onError` policy.
    pub async fn transform(&self, mut event: Event) -> Result<Vec<Event>, (Event, Failure)> {
        let input = convert::to_wit(&event);
        let result = self.call(true, Call::Transform(&input)).await;
        let outputs = match result {
            Ok(Answer::Transform(Ok(outputs))) => outputs,
            Ok(Answer::Deliver(_)) => unreachable!("a transform call answers as a transform"),
            Ok(Answer::Transform(Err(message))) => {
                let failure = Failure::Error(message);
                self.count(&failure);
                return Err((event, failure));
            }
            Err(failure) => return Err((event, failure)),
        };
        // Outputs whose data bytes are the input's reuse the parsed data:
        // moved into the last of them, cloned for the others, never parsed.
        let same: Vec<bool> = outputs
            .iter()
            .map(|o| {
                o.data.is_some()
                    && o.data == input.data
                    && o.datacontenttype == input.datacontenttype
            })
            .collect();
        let mut left = same.iter().filter(|s| **s).count();
        let mut original = if left > 0 {
            event.set_data_unchecked(Data::Binary(Vec::new()))
        } else {
            None
        };
        let mut events: Vec<Event> = Vec::with_capacity(outputs.len());
        // The output the original data was moved into.
        let mut holder = None;
        for (i, (output, same)) in outputs.into_iter().zip(same).enumerate() {
            let reuse = match (same, &original) {
                (true, Some(data)) => {
                    left -= 1;
                    Some(if left == 0 {
                        holder = Some(events.len());
                        original.take().expect("checked above")
                    } else {
                        data.clone()
                    })
                }
                _ => None,
            };
            match convert::from_wit(output, reuse) {
                Ok(e) => events.push(e),
                Err(reason) => {
                    // The event goes back whole, with its data.
                    let data = match holder {
                        Some(k) => events[k].set_data_unchecked(Data::Binary(Vec::new())),
                        None => original,
                    };
                    if let Some(data) = data {
                        event.set_data_unchecked(data);
                    }
                    let failure = Failure::Malformed(format!("output {i}: {reason}"));
                    self.count(&failure);
                    return Err((event, failure));
                }
            }
        }
        debug!(plugin = %self.info.name, event_id = %event.id(), outputs = events.len(), "transformed");
        Ok(events)
    }

    /// Calls a sink with `events`.
    pub async fn deliver(&self, events: &[CloudEvent]) -> Result<Delivery, Failure> {
        match self.call(false, Call::Deliver(events)).await? {
            Answer::Deliver(delivery) => Ok(delivery),
            Answer::Transform(_) => unreachable!("a sink call answers as a sink"),
        }
    }
}

/// Instantiation runs start functions (a Python runtime initialises): give
/// it at least this long even when calls are limited to less.
const INSTANTIATE_MIN: Duration = Duration::from_secs(5);

/// The epoch callback's error: the call passed its deadline.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;
