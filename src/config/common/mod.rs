//! The vocabulary every component's config is written in, below them all:
//! diagnostics with their places (spans), durations and sizes, `${…}`
//! expansion, secrets, TLS settings, and the checks of single fields (a
//! file to read, a URL). Components import it; it imports no component.

mod diagnostic;
mod expand;
mod fields;
mod secret;
mod tls;
mod types;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use expand::{ExpandError, expand, expand_with};
pub use fields::{check_url, compile_headers, expanded, nonzero, read_file};
pub use secret::Secret;
pub use serde_saphyr::Spanned;
pub use tls::{TlsConfig, TlsSpec, warn_plain_tls};
pub use types::{ByteSize, Duration};
