//! The resume token, kept as NVSentinel keeps it: one document per client in
//! a `ResumeTokens` collection, `{clientName, resumeToken, updatedAt}`, plus
//! `lastEventTime`, where a recovery backfill starts if the token is lost.

use std::sync::Arc;

use chrono::Utc;
use mongodb::bson::{self, Bson, Document, doc};
use serde_json::Value;

use super::{Checkpoint, Connection};
use crate::BoxFuture;
use crate::state::{PositionStore, StateError};

/// A [`PositionStore`] on the token collection.
pub struct TokenStore {
    connection: Arc<Connection>,
}

impl TokenStore {
    pub fn new(connection: Arc<Connection>) -> Self {
        Self { connection }
    }

    async fn collection(&self) -> Result<mongodb::Collection<Document>, StateError> {
        let spec = self.connection.spec();
        let client = self.connection.client().await.map_err(mongo_error)?;
        Ok(client
            .database(&spec.tokens_database)
            .collection(&spec.tokens_collection))
    }
}

fn mongo_error(e: mongodb::error::Error) -> StateError {
    StateError::Remote(format!("resume token collection: {e}"))
}

impl PositionStore for TokenStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<Value>, StateError>> {
        Box::pin(async move {
            let name = &self.connection.spec().client_name;
            let found = self
                .collection()
                .await?
                .find_one(doc! {"clientName": name})
                .await
                .map_err(mongo_error)?;
            let Some(found) = found else { return Ok(None) };
            let Some(token) = found.get("resumeToken") else {
                return Ok(None);
            };
            let token = bson::from_bson(token.clone()).map_err(|e| {
                StateError::Remote(format!("resume token of {name:?} is not a token: {e}"))
            })?;
            let last_event_time = found
                .get_datetime("lastEventTime")
                .ok()
                .and_then(|t| super::from_bson_time(*t));
            Ok(Some(
                Checkpoint {
                    token,
                    last_event_time,
                }
                .to_json(),
            ))
        })
    }

    fn save<'a>(&'a self, position: &'a Value) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let checkpoint = Checkpoint::from_json(position)
                .ok_or_else(|| StateError::Remote("not a change stream position".into()))?;
            let token = bson::to_bson(&checkpoint.token)
                .map_err(|e| StateError::Remote(format!("resume token: {e}")))?;
            let last = checkpoint
                .last_event_time
                .map_or(Bson::Null, |t| Bson::DateTime(super::to_bson_time(t)));
            let name = &self.connection.spec().client_name;
            self.collection()
                .await?
                .update_one(
                    doc! {"clientName": name},
                    doc! {"$set": {
                        "resumeToken": token,
                        "lastEventTime": last,
                        "updatedAt": super::to_bson_time(Utc::now()),
                    }},
                )
                .upsert(true)
                .await
                .map_err(mongo_error)?;
            Ok(())
        })
    }
}
