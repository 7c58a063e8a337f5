//! Condition patterns: globs (globset syntax, whole value), `a|b|c`
//! alternations of globs, and `~regex` (anchored at both ends). YAML booleans
//! and numbers compare with the field's JSON rendering.

use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::Regex;

use crate::config::PatternValue;

/// A compiled pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// No glob characters: plain string equality.
    Exact(Box<str>),
    /// `a|b|c` with no glob characters.
    AnyOf(Box<[Box<str>]>),
    /// One or more globs.
    Glob(GlobSet),
    /// `~regex`, anchored.
    Regex(Regex),
}

impl Pattern {
    /// Compiles a YAML pattern value. Maps are handled by the caller (they
    /// are path shorthand); `null` is an error.
    pub fn compile(value: &PatternValue) -> Result<Self, String> {
        match value {
            PatternValue::String(s) => Self::compile_str(s),
            PatternValue::Bool(b) => Ok(Self::Exact(b.to_string().into())),
            PatternValue::Int(i) => Ok(Self::Exact(i.to_string().into())),
            PatternValue::Uint(u) => Ok(Self::Exact(u.to_string().into())),
            PatternValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(|n| Self::Exact(n.to_string().into()))
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
        let alternatives: Vec<&str> = s.split('|').collect();
        if !alternatives.iter().any(|a| has_glob_meta(a)) {
            return Ok(match alternatives.as_slice() {
                [one] => Self::Exact((*one).into()),
                many => Self::AnyOf(many.iter().map(|a| Box::from(*a)).collect()),
            });
        }
        let mut set = GlobSetBuilder::new();
        for alt in alternatives {
            let glob = Glob::new(alt).map_err(|e| format!("invalid glob {alt:?}: {}", e.kind()))?;
            set.add(glob);
        }
        set.build()
            .map(Self::Glob)
            .map_err(|e| format!("invalid glob {s:?}: {e}"))
    }

    /// Whether `value` matches. Allocates nothing.
    #[inline]
    pub fn is_match(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => **s == *value,
            Self::AnyOf(all) => all.iter().any(|s| **s == *value),
            Self::Glob(set) => set.is_match(value),
            Self::Regex(re) => re.is_match(value),
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
