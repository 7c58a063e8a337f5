//! Checks of single fields, each naming its place on failure (never the
//! value: it may be a secret).

use std::collections::BTreeMap;

use super::{Diagnostics, Duration, Secret, Spanned, expand};

pub fn expanded(v: &Spanned<String>, place: &str, diags: &mut Diagnostics) -> Option<String> {
    match expand(&v.value) {
        Ok(s) => Some(s.into_owned()),
        Err(e) => {
            diags.error(Some(v.referenced), format!("{place}: {e}"));
            None
        }
    }
}

pub fn read_file(v: &Spanned<String>, place: &str, diags: &mut Diagnostics) -> Option<Vec<u8>> {
    let path = expanded(v, place, diags)?;
    let read = || -> Result<Vec<u8>, String> {
        use std::io::Read;
        let file = std::fs::File::open(&path).map_err(|e| e.kind().to_string())?;
        // Not a device or a pipe (`/dev/zero` would never end, `/dev/stdin`
        // would wait), nor something far larger than a key or a
        // certificate bundle.
        let meta = file.metadata().map_err(|e| e.kind().to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!("larger than {} MiB", MAX_FILE_BYTES >> 20));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_FILE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| e.kind().to_string())?;
        Ok(bytes)
    };
    read()
        .map_err(|e| {
            diags.error(
                Some(v.referenced),
                format!("{place}: cannot read {path}: {e}"),
            )
        })
        .ok()
}

/// The largest file a config names that is read whole (keys, certificates,
/// tokens, templates).
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// An `http(s)://` URL; the message never repeats the value.
pub fn check_url(v: &Spanned<String>, place: &str, diags: &mut Diagnostics) -> Option<String> {
    let url = expanded(v, place, diags)?;
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(url),
        Ok(_) => {
            diags.error(
                Some(v.referenced),
                format!("{place}: must be an http:// or https:// URL"),
            );
            None
        }
        Err(e) => {
            diags.error(Some(v.referenced), format!("{place}: not a URL ({e})"));
            None
        }
    }
}

/// Header names and values that HTTP accepts.
pub fn compile_headers(
    headers: &BTreeMap<String, Spanned<String>>,
    place: &str,
    diags: &mut Diagnostics,
) -> Vec<(String, Secret)> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let Some(v) = expanded(value, &format!("{place}.headers.{name}"), diags) else {
            continue;
        };
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            diags.error(
                Some(value.referenced),
                format!("{place}.headers: {name:?} is not a valid header name"),
            );
        } else if reqwest::header::HeaderValue::from_str(&v).is_err() {
            diags.error(
                Some(value.referenced),
                format!("{place}.headers.{name}: not a valid header value"),
            );
        } else {
            out.push((name.clone(), Secret(v)));
        }
    }
    out
}

/// A duration that must not be zero (`place` named, no position).
pub fn nonzero(d: Duration, place: &str, diags: &mut Diagnostics) {
    if d.0.is_zero() {
        diags.error(None, format!("{place}: must be greater than zero"));
    }
}
