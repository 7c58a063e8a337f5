//! `source.nomad`: HashiCorp Nomad's event stream (`GET /v1/event/stream`),
//! read like nomad-events-sink reads it, with an exact position.
//!
//! - `config.rs`: the YAML shape and its validation.
//! - `cursor.rs`: the `{index, events}` position, resume and gap detection.
//! - `stream.rs`: the HTTP stream, ndjson frames, reconnects.
//!
//! Each event becomes one record: `{"origin", "ordinal", "event"}`, the
//! Nomad event with its occurrence among the events of its index with the
//! same Topic, Type and Key, which the `nomad` mapping profile turns into a
//! CloudEvent.

mod config;
mod cursor;
mod stream;

use std::sync::Arc;

use sha2::Digest;

pub use config::{NomadSourceConfig, NomadSpec, ReconnectConfig};
pub use cursor::{Cursor, Gap, Plan, Resume};
pub use stream::stream_url;
pub(crate) use stream::{LineBuf, Parsed, occurrences, parse, record_line};

use super::{Source, SourceContext, SourceError};
use crate::BoxFuture;
use crate::state::StateSpec;
use crate::state::{PositionStore, StateError};

pub struct NomadSource {
    pub spec: NomadSpec,
}

impl NomadSource {
    /// The position file's key: the agent, and a digest of what is read
    /// (namespace, region, topics), since a position counts events under
    /// one filter. Another filter starts from Nomad's oldest buffered event.
    pub fn state_key(&self) -> String {
        let s = &self.spec;
        let mut filter = sha2::Sha256::new();
        filter.update(s.namespace.as_bytes());
        filter.update([0]);
        filter.update(s.region.as_deref().unwrap_or("").as_bytes());
        for (topic, key) in &s.topics {
            filter.update([0]);
            filter.update(format!("{topic}:{key}").as_bytes());
        }
        let digest = filter.finalize();
        let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        let origin = super::file_key(&s.origin);
        format!("nomad-{origin}-{short}")
    }
}

impl Source for NomadSource {
    fn position_store(
        &self,
        state: &StateSpec,
    ) -> Result<Option<Arc<dyn PositionStore>>, StateError> {
        super::file_store(state, &self.state_key())
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(stream::run(self.spec, ctx))
    }
}
