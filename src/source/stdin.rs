//! `source.stdin`: JSON lines from standard input, until it closes. Stdin has
//! no position: a restart cannot resume.

use serde::Deserialize;
use tokio::io::BufReader;

use super::lines::{Line, read_line};
use super::{Payload, Record, Source, SourceContext, SourceError, SourceSpec};
use crate::BoxFuture;
use crate::config::common::ByteSize;

/// `source.stdin`: JSON lines from standard input. It has no position, so a
/// restart cannot resume; use it for pipes and `route test`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StdinSourceConfig {
    /// The longest line accepted; a longer one is skipped and counted as malformed.
    #[serde(default = "super::lines::default_max_line")]
    pub max_line_bytes: ByteSize,
}

impl StdinSourceConfig {
    pub(super) fn compile(&self) -> SourceSpec {
        SourceSpec::Stdin {
            max_line_bytes: usize::try_from(self.max_line_bytes.0).unwrap_or(usize::MAX),
        }
    }
}

pub struct StdinSource {
    pub max_line: usize,
}

impl Source for StdinSource {
    fn position_store(
        &self,
        _state: &crate::state::StateSpec,
    ) -> Result<Option<std::sync::Arc<dyn crate::state::PositionStore>>, crate::state::StateError>
    {
        Ok(None)
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            ctx.stats
                .connected
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let mut reader = BufReader::with_capacity(256 * 1024, tokio::io::stdin());
            let mut buf = Vec::new();
            let io = |source| SourceError::Io {
                what: "cannot read",
                path: "stdin".into(),
                source,
            };
            loop {
                let line = tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    line = read_line(&mut reader, &mut buf, self.max_line) => line.map_err(io)?,
                };
                let payload = match line {
                    Line::Eof { consumed: 0 } => return Ok(()),
                    Line::Complete { .. } | Line::Eof { .. } => {
                        if buf.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        Payload::Line(std::mem::take(&mut buf))
                    }
                    Line::TooLong { .. } => {
                        Payload::Invalid(format!("line longer than {} bytes", self.max_line))
                    }
                };
                if ctx
                    .out
                    .send(Record {
                        payload,
                        position: None,
                        done: None,
                    })
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
        })
    }
}
