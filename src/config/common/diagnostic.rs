//! Config errors and warnings that name their place: `FILE:LINE:COL: message`.

use std::fmt;

use serde_saphyr::Location;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// 1-based line and column, when known.
    pub position: Option<(u64, u64)>,
    pub message: String,
}

impl Diagnostic {
    pub fn error(at: Option<Location>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            position: at.and_then(position),
            message: message.into(),
        }
    }

    pub fn warning(at: Option<Location>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            position: at.and_then(position),
            message: message.into(),
        }
    }

    /// Converts a YAML/serde error, keeping its position but not repeating it
    /// in the message.
    pub fn from_yaml(err: &serde_saphyr::Error) -> Self {
        let location = err.location();
        let text = err.to_string();
        let message = strip_location_suffix(&text).to_owned();
        Self::error(location, message)
    }

    /// Formats as `FILE:LINE:COL: message` (`warning: ` before warnings).
    pub fn display<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        struct D<'a>(&'a Diagnostic, &'a str);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let Self(d, file) = self;
                match d.position {
                    Some((line, col)) => write!(f, "{file}:{line}:{col}: ")?,
                    None => write!(f, "{file}: ")?,
                }
                if d.severity == Severity::Warning {
                    f.write_str("warning: ")?;
                }
                f.write_str(&d.message)
            }
        }
        D(self, file)
    }
}

fn position(loc: Location) -> Option<(u64, u64)> {
    (loc != Location::UNKNOWN && loc.line() > 0).then(|| (loc.line(), loc.column()))
}

/// serde-saphyr appends " at line N, column M" to its messages; the position
/// is printed in front instead.
fn strip_location_suffix(text: &str) -> &str {
    let text = text.trim_end();
    match text.rfind(" at line ") {
        Some(i)
            if text[i + 9..]
                .chars()
                .all(|c| c.is_ascii_digit() || ", column".contains(c)) =>
        {
            &text[..i]
        }
        _ => text,
    }
}

/// All the problems found in one file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn one(d: Diagnostic) -> Self {
        Self(vec![d])
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn error(&mut self, at: Option<Location>, message: impl Into<String>) {
        self.push(Diagnostic::error(at, message));
    }

    pub fn warning(&mut self, at: Option<Location>, message: impl Into<String>) {
        self.push(Diagnostic::warning(at, message));
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// One line per diagnostic, `FILE:LINE:COL: message`.
    pub fn render(&self, file: &str) -> String {
        self.0
            .iter()
            .map(|d| format!("{}\n", d.display(file)))
            .collect()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.render("config").trim_end())
    }
}

impl std::error::Error for Diagnostics {}
