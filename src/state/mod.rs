//! Persisted source positions. A position is opaque JSON chosen by the source
//! (a byte offset for `file`, a resume token for change streams); a
//! [`PositionStore`] keeps the last finished one. `config.rs`: the `state`
//! settings.

mod config;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::BoxFuture;

pub use config::{DEFAULT_MAX_IN_FLIGHT, StateConfig, StateSpec};

/// Why a position could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("position file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Remote(String),
    #[error("position file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Where a source's position lives.
pub trait PositionStore: Send + Sync {
    fn load(&self) -> BoxFuture<'_, Result<Option<Value>, StateError>>;
    fn save<'a>(&'a self, position: &'a Value) -> BoxFuture<'a, Result<(), StateError>>;
}

/// A JSON file in the state directory, replaced atomically on each save
/// (write to a temporary file, fsync, rename).
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// Opens `<dir>/<key>.position.json`, creating `dir` if needed.
    pub fn open(dir: &Path, key: &str) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            path: dir.join(format!("{key}.position.json")),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl PositionStore for FileStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<Value>, StateError>> {
        Box::pin(async move {
            match tokio::fs::read(&self.path).await {
                Ok(bytes) => {
                    serde_json::from_slice(&bytes)
                        .map(Some)
                        .map_err(|source| StateError::Corrupt {
                            path: self.path.clone(),
                            source,
                        })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(StateError::Io {
                    path: self.path.clone(),
                    source,
                }),
            }
        })
    }

    fn save<'a>(&'a self, position: &'a Value) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let path = self.path.clone();
            let bytes = serde_json::to_vec(position).expect("JSON value serialises");
            tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
                .await
                .expect("position writer does not panic")
                .map_err(|source| StateError::Io {
                    path: self.path.clone(),
                    source,
                })
        })
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(&dir.path().join("nested"), "file-abc").unwrap();
        assert_eq!(store.load().await.unwrap(), None);
        store
            .save(&serde_json::json!({"offset": 42}))
            .await
            .unwrap();
        store
            .save(&serde_json::json!({"offset": 43}))
            .await
            .unwrap();
        assert_eq!(store.load().await.unwrap().unwrap()["offset"], 43);
        std::fs::write(store.path(), b"{not json").unwrap();
        assert!(matches!(
            store.load().await,
            Err(StateError::Corrupt { .. })
        ));
    }
}
