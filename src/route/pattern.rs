//! Condition patterns: globs (globset syntax, whole value), `a|b|c`
//! alternations of globs, and `~regex` (anchored at both ends). YAML booleans
//! and numbers compare with the field's JSON rendering.

use globset::{Glob, GlobMatcher};
use regex::Regex;

use super::config::PatternValue;

/// A compiled pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// One glob (or plain string).
    One(Matcher),
    /// `a|b|c`: any of the globs.
    AnyOf(Box<[Matcher]>),
    /// `~regex`, anchored.
    Regex(Regex),
    /// A pattern on an NVSentinel enum field: true for what `written`
    /// matches and for both spellings (number and name) of every member
    /// whose number or name `written` matches.
    Enum {
        written: Box<Pattern>,
        spellings: Box<[Box<str>]>,
    },
}

/// One glob, compiled to the cheapest test that means the same.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// No glob characters: string equality.
    Exact(Box<str>),
    /// `*`: any value.
    Any,
    /// `abc*`.
    Prefix(Box<str>),
    /// `*abc`.
    Suffix(Box<str>),
    /// `*abc*`.
    Contains(Box<str>),
    /// Anything else (`?`, classes, `{a,b}`, inner `*`).
    Glob(GlobMatcher),
}

impl Matcher {
    fn compile(glob: &str) -> Result<Self, String> {
        if !has_glob_meta(glob) {
            return Ok(Self::Exact(glob.into()));
        }
        if !glob.contains(['?', '[', '{', '\\']) {
            let inner = glob.trim_matches('*');
            let simple = !inner.contains('*');
            match (glob.starts_with('*'), glob.ends_with('*')) {
                _ if inner.is_empty() => return Ok(Self::Any),
                (false, true) if simple => return Ok(Self::Prefix(inner.into())),
                (true, false) if simple => return Ok(Self::Suffix(inner.into())),
                (true, true) if simple => return Ok(Self::Contains(inner.into())),
                _ => {}
            }
        }
        Glob::new(glob)
            .map(|g| Self::Glob(g.compile_matcher()))
            .map_err(|e| format!("invalid glob {glob:?}: {}", e.kind()))
    }

    #[inline]
    fn is_match(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => **s == *value,
            Self::Any => true,
            Self::Prefix(p) => value.starts_with(&**p),
            Self::Suffix(p) => value.ends_with(&**p),
            Self::Contains(p) => value.contains(&**p),
            Self::Glob(g) => g.is_match(value),
        }
    }
}

impl Pattern {
    /// Compiles a YAML pattern value. Maps are handled by the caller (they
    /// are path shorthand); `null` is an error.
    pub fn compile(value: &PatternValue) -> Result<Self, String> {
        let exact = |s: String| Ok(Self::One(Matcher::Exact(s.into())));
        match value {
            PatternValue::String(s) => Self::compile_str(s),
            PatternValue::Bool(b) => exact(b.to_string()),
            PatternValue::Int(i) => exact(i.to_string()),
            PatternValue::Uint(u) => exact(u.to_string()),
            PatternValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(|n| Self::One(Matcher::Exact(n.to_string().into())))
                .ok_or_else(|| format!("{f} cannot be compared with a JSON number")),
            PatternValue::Null => {
                Err("empty pattern: write a value, or \"\" to match an empty string".to_owned())
            }
            PatternValue::Map(_) => Err("a map is not a pattern".to_owned()),
        }
    }

    fn compile_str(s: &str) -> Result<Self, String> {
        if let Some(re) = s.strip_prefix('~') {
            return Regex::new(&format!("^(?:{re})$"))
                .map(Self::Regex)
                .map_err(|e| format!("invalid regular expression {re:?}: {}", regex_reason(&e)));
        }
        let mut alternatives = s
            .split('|')
            .map(Matcher::compile)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if alternatives.len() == 1 {
            Self::One(alternatives.pop().expect("one alternative"))
        } else {
            Self::AnyOf(alternatives.into())
        })
    }

    /// Widens a pattern on an enum field to both spellings of the members
    /// it matches: `NONE` also matches `0`, `2` also `COMPONENT_RESET`,
    /// `RESTART_*` also `15` and `24`. Unknown values still meet the
    /// pattern as written.
    pub fn over_enum(self, table: &[(i64, &str)]) -> Self {
        let mut spellings: Vec<Box<str>> = Vec::new();
        for (number, name) in table {
            let number = number.to_string();
            if self.is_match(&number) || self.is_match(name) {
                spellings.push(number.into());
                spellings.push((*name).into());
            }
        }
        Self::Enum {
            written: Box::new(self),
            spellings: spellings.into(),
        }
    }

    /// Whether `value` matches. Allocates nothing.
    #[inline]
    pub fn is_match(&self, value: &str) -> bool {
        match self {
            Self::One(m) => m.is_match(value),
            Self::AnyOf(all) => all.iter().any(|m| m.is_match(value)),
            Self::Regex(re) => re.is_match(value),
            Self::Enum { written, spellings } => {
                spellings.iter().any(|s| **s == *value) || written.is_match(value)
            }
        }
    }
}

fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{', '\\'])
}

/// The last line of regex's multi-line syntax error ("error: unclosed group").
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&text);
    last.trim().trim_start_matches("error: ").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::compile(&PatternValue::String(s.to_owned())).unwrap()
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("Normal", "Normal", true),
            ("Normal", "normal", false),
            ("Normal", "NormalX", false),
            ("*test*", "my-test-ns", true),
            ("*test*", "test", true),
            ("*test*", "prod", false),
            ("Pod|Deployment|ReplicaSet", "Deployment", true),
            ("Pod|Deployment|ReplicaSet", "Po", false),
            ("Pod|Deploy*", "Deployment", true),
            ("gpu-node-0*", "gpu-node-0042", true),
            ("gpu-node-0*", "gpu-node-1042", false),
            ("*", "a/b/c", true),
            ("XID_[0-9][0-9]", "XID_79", true),
            ("XID_{48,79}", "XID_79", true),
            ("~XID_(48|79)", "XID_79", true),
            ("~XID_(48|79)", "XID_790", false),
            ("~XID_(48|79)", "xXID_79", false),
            ("~gpu-node-\\d+", "gpu-node-12", true),
            ("", "", true),
            ("", "x", false),
            ("*", "", true),
            ("**", "anything", true),
            ("*Error*", "InfiniBandError", true),
            ("*Error", "InfiniBandError", true),
            ("*Error", "ErrorX", false),
            ("Infini*", "InfiniBandError", true),
            ("Infini*", "xInfini", false),
            ("a*b", "axxb", true),
            ("a*b", "axxbc", false),
            ("gpu-?", "gpu-1", true),
            ("gpu-?", "gpu-12", false),
            ("RESTART_*|REPLACE_VM", "RESTART_BM", true),
            ("RESTART_*|REPLACE_VM", "REPLACE_VM", true),
            ("RESTART_*|REPLACE_VM", "REPLACE_BM", false),
        ];
        for (pattern, value, want) in cases {
            assert_eq!(
                p(pattern).is_match(value),
                *want,
                "{pattern:?} vs {value:?}"
            );
        }
    }

    #[test]
    fn scalars_compare_with_json_rendering() {
        let t = Pattern::compile(&PatternValue::Bool(true)).unwrap();
        assert!(t.is_match("true") && !t.is_match("True"));
        let n = Pattern::compile(&PatternValue::Uint(24)).unwrap();
        assert!(n.is_match("24") && !n.is_match("24.0"));
        let f = Pattern::compile(&PatternValue::Float(1.5)).unwrap();
        assert!(f.is_match("1.5"));
    }

    #[test]
    fn enum_patterns_accept_numbers_and_names() {
        use crate::event::enums::RECOMMENDED_ACTION;
        let e = |s: &str| p(s).over_enum(RECOMMENDED_ACTION);
        let cases: &[(&str, &str, bool)] = &[
            ("NONE", "NONE", true),
            ("NONE", "0", true),
            ("NONE", "2", false),
            ("0", "NONE", true),
            ("2", "COMPONENT_RESET", true),
            ("COMPONENT_RESET", "2", true),
            ("RESTART_*|REPLACE_VM", "15", true),
            ("RESTART_*|REPLACE_VM", "24", true),
            ("RESTART_*|REPLACE_VM", "25", true),
            ("RESTART_*|REPLACE_VM", "RESTART_BM", true),
            ("RESTART_*|REPLACE_VM", "5", false),
            ("RESTART_*|REPLACE_VM", "CONTACT_SUPPORT", false),
            ("~RUN_.*", "6", true),
            ("~RUN_.*", "26", true),
            ("~RUN_.*", "27", false),
            // A number the table does not know meets the pattern as written.
            ("12345", "12345", true),
            ("*", "12345", true),
            ("NONE", "12345", false),
        ];
        for (pattern, value, want) in cases {
            assert_eq!(
                e(pattern).is_match(value),
                *want,
                "{pattern:?} vs {value:?}"
            );
        }
    }

    #[test]
    fn errors() {
        let e = Pattern::compile(&PatternValue::String("~a(".into())).unwrap_err();
        assert_eq!(e, "invalid regular expression \"a(\": unclosed group");
        let e = Pattern::compile(&PatternValue::String("a[".into())).unwrap_err();
        assert_eq!(
            e,
            "invalid glob \"a[\": unclosed character class; missing ']'"
        );
        assert!(Pattern::compile(&PatternValue::Null).is_err());
    }
}
