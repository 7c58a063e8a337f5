//! `source.mongodb`: the YAML shape and its validation into a [`MongoSpec`].

use serde::Deserialize;
use serde_json::Value;

use crate::config::{Diagnostics, Duration, Spanned, expand};

/// `source.mongodb`: a change stream on one collection, with resume tokens
/// and a historical backfill.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MongoSourceConfig {
    /// Connection string (`${MONGODB_URI}`); TLS and auth via its options.
    #[serde(default)]
    pub uri: Option<Spanned<String>>,
    /// A file holding the connection string (a mounted Secret), instead of `uri`.
    #[serde(default)]
    pub uri_file: Option<Spanned<String>>,
    /// Database of the watched collection.
    #[serde(default = "default_database")]
    pub database: String,
    /// The watched collection.
    #[serde(default = "default_collection")]
    pub collection: String,
    /// Change types exported: `insert` (default), `update`, `replace`. Updates
    /// and replaces are read with `fullDocument: updateLookup`.
    #[serde(default = "default_operation_types")]
    pub operation_types: Vec<Spanned<String>>,
    /// Aggregation stages appended to the change stream (`$match` …).
    #[serde(default)]
    pub pipeline: Vec<Value>,
    /// Where the resume token is kept.
    #[serde(default)]
    pub resume_tokens: ResumeTokensConfig,
    /// History read on first start (no token) and after a lost token.
    #[serde(default)]
    pub backfill: BackfillConfig,
}

/// `resumeTokens: {database, collection, clientName}`: one document per
/// client, `{clientName, resumeToken, updatedAt, lastEventTime}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResumeTokensConfig {
    /// Database of the token collection.
    #[serde(default = "default_database")]
    pub database: String,
    /// The token collection.
    #[serde(default = "default_token_collection")]
    pub collection: String,
    /// This exporter's key in it; two exporters with one name share a position.
    #[serde(default = "default_client_name")]
    pub client_name: String,
}

impl Default for ResumeTokensConfig {
    fn default() -> Self {
        Self {
            database: default_database(),
            collection: default_token_collection(),
            client_name: default_client_name(),
        }
    }
}

/// `backfill: {enabled, maxAge, maxEvents, batchSize, rateLimit, timeField}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackfillConfig {
    /// Read history on first start. (Recovery from a lost token always backfills.)
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How far back the first backfill reaches.
    #[serde(default = "default_max_age")]
    pub max_age: Duration,
    /// At most this many documents on first start: the newest ones, sent oldest first.
    #[serde(default = "default_max_events")]
    pub max_events: u64,
    /// Documents per query batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// At most this many documents per second (0: no limit).
    #[serde(default = "default_rate_limit")]
    pub rate_limit: u32,
    /// The document field that holds its time (a BSON date).
    #[serde(default = "default_time_field")]
    pub time_field: String,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_age: default_max_age(),
            max_events: default_max_events(),
            batch_size: default_batch_size(),
            rate_limit: default_rate_limit(),
            time_field: default_time_field(),
        }
    }
}

fn default_database() -> String {
    "nvsentinel".into()
}
fn default_collection() -> String {
    "HealthEvents".into()
}
fn default_token_collection() -> String {
    "ResumeTokens".into()
}
fn default_client_name() -> String {
    "switchyard".into()
}
fn default_operation_types() -> Vec<Spanned<String>> {
    let unknown = serde_saphyr::Location::UNKNOWN;
    vec![Spanned::new("insert".into(), unknown, unknown)]
}
fn default_true() -> bool {
    true
}
fn default_max_age() -> Duration {
    Duration::from_secs(720 * 3600)
}
fn default_max_events() -> u64 {
    1_000_000
}
fn default_batch_size() -> u32 {
    500
}
fn default_rate_limit() -> u32 {
    1000
}
fn default_time_field() -> String {
    "createdAt".into()
}

/// A validated MongoDB source.
#[derive(Clone, PartialEq)]
pub struct MongoSpec {
    /// The connection string. Secret: never logged.
    pub uri: String,
    pub database: String,
    pub collection: String,
    pub operation_types: Vec<String>,
    pub pipeline: Vec<mongodb::bson::Document>,
    pub tokens_database: String,
    pub tokens_collection: String,
    pub client_name: String,
    pub backfill: BackfillSpec,
}

/// The URI may hold a password: `Debug` leaves it out.
impl std::fmt::Debug for MongoSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoSpec")
            .field("uri", &"***")
            .field("database", &self.database)
            .field("collection", &self.collection)
            .field("operation_types", &self.operation_types)
            .field("pipeline", &self.pipeline)
            .field("tokens_database", &self.tokens_database)
            .field("tokens_collection", &self.tokens_collection)
            .field("client_name", &self.client_name)
            .field("backfill", &self.backfill)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackfillSpec {
    pub enabled: bool,
    pub max_age: std::time::Duration,
    pub max_events: u64,
    pub batch_size: u32,
    pub rate_limit: u32,
    pub time_field: String,
}

const OPERATION_TYPES: [&str; 3] = ["insert", "update", "replace"];

impl MongoSourceConfig {
    /// Validates, reporting every problem at `at` (the `source` position).
    pub fn compile(
        &self,
        at: serde_saphyr::Location,
        diags: &mut Diagnostics,
    ) -> Option<MongoSpec> {
        let uri = match (&self.uri, &self.uri_file) {
            (Some(u), None) => expand(&u.value)
                .map(|v| v.into_owned())
                .map_err(|e| diags.error(Some(u.referenced), format!("source.mongodb.uri: {e}")))
                .ok(),
            (None, Some(f)) => match expand(&f.value).map(|p| std::fs::read_to_string(&*p)) {
                Ok(Ok(text)) => Some(text.trim().to_owned()),
                Ok(Err(e)) => {
                    diags.error(
                        Some(f.referenced),
                        format!(
                            "source.mongodb.uriFile: cannot read {}: {}",
                            f.value,
                            e.kind()
                        ),
                    );
                    None
                }
                Err(e) => {
                    diags.error(Some(f.referenced), format!("source.mongodb.uriFile: {e}"));
                    None
                }
            },
            _ => {
                diags.error(Some(at), "source.mongodb: set exactly one of: uri, uriFile");
                None
            }
        };
        if let Some(u) = &uri
            && !(u.starts_with("mongodb://") || u.starts_with("mongodb+srv://"))
        {
            // Never print the value: it may hold a password.
            diags.error(
                Some(at),
                "source.mongodb.uri: must start with mongodb:// or mongodb+srv://",
            );
        }
        let mut operation_types = Vec::new();
        for op in &self.operation_types {
            if OPERATION_TYPES.contains(&op.value.as_str()) {
                operation_types.push(op.value.clone());
            } else {
                diags.error(
                    Some(op.referenced),
                    format!("source.mongodb.operationTypes: unknown operation type {:?}; use insert, update or replace", op.value),
                );
            }
        }
        if operation_types.is_empty() && !self.operation_types.is_empty() {
            return None;
        }
        let mut pipeline = Vec::new();
        for (i, stage) in self.pipeline.iter().enumerate() {
            match mongodb::bson::to_document(stage) {
                Ok(d) if d.len() == 1 && d.keys().all(|k| k.starts_with('$')) => pipeline.push(d),
                _ => diags.error(
                    Some(at),
                    format!("source.mongodb.pipeline[{i}]: an aggregation stage is a map with one $operator key"),
                ),
            }
        }
        let b = &self.backfill;
        if b.batch_size == 0 {
            diags.error(
                Some(at),
                "source.mongodb.backfill.batchSize: must be at least 1",
            );
        }
        if b.time_field.is_empty() {
            diags.error(
                Some(at),
                "source.mongodb.backfill.timeField: must not be empty",
            );
        }
        Some(MongoSpec {
            uri: uri?,
            database: self.database.clone(),
            collection: self.collection.clone(),
            operation_types,
            pipeline,
            tokens_database: self.resume_tokens.database.clone(),
            tokens_collection: self.resume_tokens.collection.clone(),
            client_name: self.resume_tokens.client_name.clone(),
            backfill: BackfillSpec {
                enabled: b.enabled,
                max_age: b.max_age.0,
                max_events: b.max_events,
                batch_size: b.batch_size.max(1),
                rate_limit: b.rate_limit,
                time_field: b.time_field.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{SourceSpec, parse, validate};

    fn source(yaml_source: &str) -> Result<SourceSpec, String> {
        let yaml = format!("metadata: {{cluster: c}}\nsource:\n  mongodb: {yaml_source}\n");
        validate(&parse(&yaml).map_err(|e| e.to_string())?)
            .map(|(c, _)| c.source)
            .map_err(|e| e.render("f.yaml"))
    }

    #[test]
    fn uri_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("mongo-uri");
        std::fs::write(&secret, "mongodb://user:s3cret@db:27017/?replicaSet=rs0\n").unwrap();
        let Ok(SourceSpec::Mongodb(spec)) = source(&format!("{{uriFile: {}}}", secret.display()))
        else {
            panic!("valid")
        };
        assert_eq!(spec.uri, "mongodb://user:s3cret@db:27017/?replicaSet=rs0");
        assert_eq!(
            (spec.database.as_str(), spec.collection.as_str()),
            ("nvsentinel", "HealthEvents")
        );
        assert_eq!(spec.operation_types, ["insert"]);
        assert_eq!(spec.client_name, "switchyard");
        assert_eq!(
            spec.backfill.max_age,
            std::time::Duration::from_secs(720 * 3600)
        );

        let missing = source("{uriFile: /nonexistent/mongo-uri}").unwrap_err();
        assert_eq!(
            missing,
            "f.yaml:3:22: source.mongodb.uriFile: cannot read /nonexistent/mongo-uri: entity not found\n"
        );
    }

    #[test]
    fn the_uri_never_appears_in_errors() {
        // SAFETY: this test alone reads the variable.
        unsafe {
            std::env::set_var(
                "SWITCHYARD_TEST_BAD_MONGO_URI",
                "postgres://admin:hunter2@db/",
            )
        };
        let err = source("{uri: \"${SWITCHYARD_TEST_BAD_MONGO_URI}\"}").unwrap_err();
        assert!(err.contains("must start with mongodb://"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn pipeline_stages_and_update_lookup() {
        let Ok(SourceSpec::Mongodb(spec)) = source(
            "{uri: \"mongodb://h/\", operationTypes: [insert, replace], pipeline: [{$match: {\"fullDocument.healthevent.isfatal\": true}}]}",
        ) else {
            panic!("valid")
        };
        assert_eq!(spec.operation_types, ["insert", "replace"]);
        assert_eq!(spec.pipeline.len(), 1);
        assert!(spec.pipeline[0].contains_key("$match"));
    }
}
