//! `source.mongodb`: NVSentinel's `HealthEvents` (or any collection) read
//! live from a change stream, with a historical backfill on first start, the
//! resume token kept in a `ResumeTokens` collection, and recovery by backfill
//! when the token has fallen off the oplog — never a silent gap.
//!
//! - `config.rs`: the YAML shape and its validation.
//! - `client.rs`: the client from the URI and the `tls` files.
//! - `tokens.rs`: the [`PositionStore`] on the token collection.
//! - `stream.rs`: the run loop (first start, backfill, stream, recovery).

mod client;
mod config;
mod stream;
mod tokens;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mongodb::Client;
use mongodb::bson::{self, Bson};
use mongodb::change_stream::event::ResumeToken;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

pub use client::connect;
pub use config::{
    BackfillSpec, Identity, MongoSourceConfig, MongoSpec, MongoTlsConfig, MongoTlsSpec,
};
pub use tokens::TokenStore;

use super::{Source, SourceContext, SourceError};
use crate::BoxFuture;
use crate::state::{PositionStore, StateError};

/// One client per process, made on first use (`Client::with_uri_str` may
/// resolve SRV records) and shared by the source and its token store.
#[derive(Debug)]
pub struct Connection {
    spec: MongoSpec,
    client: OnceCell<Client>,
}

impl Connection {
    pub fn new(spec: MongoSpec) -> Arc<Self> {
        Arc::new(Self {
            spec,
            client: OnceCell::new(),
        })
    }

    pub async fn client(&self) -> mongodb::error::Result<&Client> {
        self.client
            .get_or_try_init(|| connect(&self.spec.uri, self.spec.tls.as_ref(), "switchyard"))
            .await
    }

    pub fn spec(&self) -> &MongoSpec {
        &self.spec
    }
}

/// The MongoDB source.
pub struct MongoSource {
    connection: Arc<Connection>,
}

impl MongoSource {
    pub fn new(spec: MongoSpec) -> Self {
        Self {
            connection: Connection::new(spec),
        }
    }
}

impl Source for MongoSource {
    fn position_store(
        &self,
        _state: &crate::state::StateSpec,
    ) -> Result<Option<Arc<dyn PositionStore>>, StateError> {
        Ok(Some(Arc::new(TokenStore::new(self.connection.clone()))))
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(stream::run(self.connection, ctx))
    }
}

/// The persisted position: the resume token and the time of the last
/// finished event (where a recovery backfill starts).
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub token: ResumeToken,
    pub last_event_time: Option<DateTime<Utc>>,
}

impl Checkpoint {
    pub fn to_json(&self) -> Value {
        let token = bson::to_bson(&self.token)
            .map(Bson::into_relaxed_extjson)
            .unwrap_or(Value::Null);
        json!({
            "resumeToken": token,
            "lastEventTime": self.last_event_time.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        })
    }

    pub fn from_json(v: &Value) -> Option<Self> {
        let token = Bson::try_from(v.get("resumeToken")?.clone()).ok()?;
        let token: ResumeToken = bson::from_bson(token).ok()?;
        let last_event_time = v
            .get("lastEventTime")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        Some(Self {
            token,
            last_event_time,
        })
    }
}

/// A BSON date as a chrono time.
pub fn from_bson_time(t: bson::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(t.timestamp_millis())
}

/// A chrono time as a BSON date (milliseconds).
pub fn to_bson_time(t: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

/// Server error codes that mean the resume token can no longer be used.
const TOKEN_LOST_CODES: [i32; 4] = [
    136, // CappedPositionLost
    260, // InvalidResumeToken
    280, // ChangeStreamFatalError
    286, // ChangeStreamHistoryLost
];

/// Whether `e` says the resume point is gone from the oplog.
pub fn is_token_lost(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => TOKEN_LOST_CODES.contains(&c.code),
        _ => false,
    }
}
