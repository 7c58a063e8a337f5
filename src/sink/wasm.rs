//! `wasm`: a receiver written as a WebAssembly component (world `sink`).
//! The plugin's answer feeds the shared retry policy and dead letters like
//! any receiver's; a trap, a timeout or a memory overrun is a transient
//! failure (`Retry`) — the instance is replaced, and after `maxRetries`
//! the batch goes to the dead letter file.

use std::sync::Arc;

use super::{Delivery, Item, Sink};
use crate::BoxFuture;
use crate::plugin::bindings_types::Delivery as PluginDelivery;
use crate::plugin::{Plugin, to_wit};

pub struct WasmSink {
    plugin: Arc<Plugin>,
}

impl WasmSink {
    pub fn new(plugin: Arc<Plugin>) -> Self {
        Self { plugin }
    }
}

impl Sink for WasmSink {
    fn deliver<'a>(&'a self, items: &'a [Item]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            let events: Vec<_> = items.iter().map(|i| to_wit(i.event())).collect();
            match self.plugin.deliver(&events).await {
                Ok(PluginDelivery::Ok) => Delivery::Delivered,
                Ok(PluginDelivery::Retry(reason)) => {
                    Delivery::retry(format!("plugin {}: {reason}", self.plugin.name()))
                }
                Ok(PluginDelivery::Reject(reason)) => {
                    Delivery::Reject(format!("plugin {}: {reason}", self.plugin.name()))
                }
                Err(failure) => Delivery::retry(format!("plugin {} {failure}", self.plugin.name())),
            }
        })
    }
}
