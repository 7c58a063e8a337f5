//! `${ENV_VAR}` and `${file:/path}` expansion in config string values, so that
//! secrets come from the environment or a mounted Kubernetes Secret.
//!
//! `$$` is a literal `$`. A variable that is not set, or a file that cannot be
//! read, is an error (never an empty string). One trailing newline of a file's
//! content is removed, as a Secret written with `echo` ends with one.

use std::borrow::Cow;

/// Why a value could not be expanded. The message never contains the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExpandError {
    #[error("environment variable {0} is not set")]
    MissingVar(String),
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("unterminated ${{…}} reference")]
    Unterminated,
    #[error("empty ${{}} reference")]
    Empty,
}

/// Expands every `${…}` reference in `input`, reading variables with `env`.
pub fn expand_with<'a>(
    input: &'a str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Cow<'a, str>, ExpandError> {
    if !input.contains('$') {
        return Ok(Cow::Borrowed(input));
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(ExpandError::Unterminated)?;
            let name = body[..end].trim();
            if name.is_empty() {
                return Err(ExpandError::Empty);
            }
            if let Some(path) = name.strip_prefix("file:") {
                let content = std::fs::read_to_string(path).map_err(|e| ExpandError::File {
                    path: path.to_owned(),
                    reason: e.kind().to_string(),
                })?;
                let content = content.strip_suffix('\n').unwrap_or(&content);
                out.push_str(content.strip_suffix('\r').unwrap_or(content));
            } else {
                let value = env(name).ok_or_else(|| ExpandError::MissingVar(name.to_owned()))?;
                out.push_str(&value);
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// Expands with the process environment.
pub fn expand(input: &str) -> Result<Cow<'_, str>, ExpandError> {
    expand_with(input, |name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cr:t #x".to_owned())
    }

    #[test]
    fn expands_variables_files_and_escapes() {
        assert_eq!(expand_with("plain", env).unwrap(), "plain");
        assert_eq!(expand_with("a ${TOKEN} b", env).unwrap(), "a s3cr:t #x b");
        assert_eq!(
            expand_with("cost $$5 and $x", env).unwrap(),
            "cost $5 and $x"
        );
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "from-file\n").unwrap();
        let input = format!("${{file:{}}}", secret.display());
        assert_eq!(expand_with(&input, env).unwrap(), "from-file");
    }

    #[test]
    fn errors_name_the_reference_not_the_value() {
        assert_eq!(
            expand_with("${NOPE}", env).unwrap_err().to_string(),
            "environment variable NOPE is not set"
        );
        assert_eq!(
            expand_with("${TOKEN", env).unwrap_err(),
            ExpandError::Unterminated
        );
        let err = expand_with("${file:/nonexistent/secret}", env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read /nonexistent/secret: entity not found"
        );
    }
}
