//! Every structural error at once. serde stops at the first unknown key or
//! wrong type, so [`parse`] deserialises, records the error, blanks the
//! offending entry out of the text (spaces, newlines kept, so every line and
//! column stays where the user wrote it) and deserialises again, until the
//! text is clean, an error cannot be blanked, or [`MAX_ERRORS`] are found.
//! Why this and not a schema walk: `docs/decisions.md`.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_saphyr::granit_parser::{Event, Marker, Parser, StructureStyle};

use super::{Diagnostic, Diagnostics};

/// At most this many structural errors are reported; the rest of the file
/// is not looked at.
pub const MAX_ERRORS: usize = 20;

/// Deserialises `text`, reporting every unknown key and wrong type (each
/// with its line and column, in file order) rather than the first.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, Diagnostics> {
    let mut text = Cow::Borrowed(text);
    let mut diags = Diagnostics::default();
    // Keys whose entries were blanked for a wrong value: a "missing field"
    // for one of them is our doing, not the user's.
    let mut blanked_keys: Vec<String> = Vec::new();
    let mut capped = false;
    loop {
        let err = match deserialize::<T>(&text) {
            Ok(config) if diags.0.is_empty() => return Ok(config),
            Ok(_) => break,
            Err(e) => e,
        };
        let fault = Fault::of(&err);
        if let Fault::Missing(field) = &fault
            && blanked_keys.iter().any(|k| k == field)
        {
            break;
        }
        diags.push(Diagnostic::from_yaml(&err));
        if diags.0.len() == MAX_ERRORS {
            capped = true;
            break;
        }
        let Some(blank) = Outline::of(&text).and_then(|o| o.find(&fault, err.location())) else {
            break;
        };
        let next = blank.apply(&text);
        if next == *text {
            break;
        }
        if matches!(fault, Fault::Value)
            && let Some(key) = blank.key
        {
            blanked_keys.push(key);
        }
        text = Cow::Owned(next);
    }
    // Stable: errors at one place keep the order they were found in.
    diags.0.sort_by_key(|d| d.position);
    if capped {
        diags.error(
            None,
            format!("stopped after {MAX_ERRORS} errors; fix these and validate again"),
        );
    }
    Err(diags)
}

fn deserialize<T: DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_with_options(text, options)
}

/// What an error is about, which says what to blank.
#[derive(Debug, PartialEq)]
enum Fault {
    /// A key that does not belong (unknown, duplicate): its entry goes.
    Key,
    /// A required key is absent: nothing to blank.
    Missing(String),
    /// A value of the wrong type or form: its entry (or list item) goes.
    Value,
}

impl Fault {
    fn of(err: &serde_saphyr::Error) -> Self {
        use serde_saphyr::Error as E;
        match err {
            E::SerdeUnknownField { .. } | E::DuplicateMappingKey { .. } => Self::Key,
            E::SerdeMissingField { field, .. } => Self::Missing((*field).to_owned()),
            _ => Self::Value,
        }
    }
}

/// A line and 1-based column, as errors report them.
type At = (u64, u64);

fn at(m: &Marker) -> At {
    (m.line() as u64, m.col() as u64 + 1)
}

/// One map entry or list item of the text, as byte offsets.
#[derive(Debug)]
struct Item {
    /// Where its key starts (`None` for a list item).
    key_at: Option<At>,
    key: Option<String>,
    value_at: At,
    start: usize,
    end: usize,
    /// Inside `{…}` or `[…]`: a following comma goes with it.
    flow: bool,
    /// The only entry of a block map or item of a block list: blanking it
    /// would leave null where a map or list was, so `{}` or `[]` is written.
    alone: Option<&'static str>,
    depth: usize,
}

/// The entries and items of a YAML text, from its parser's events.
struct Outline {
    items: Vec<Item>,
}

/// A node's extent.
struct Node {
    at: At,
    start: usize,
    end: usize,
    scalar: Option<String>,
}

impl Outline {
    /// `None` when the text is not YAML the parser can walk.
    fn of(text: &str) -> Option<Self> {
        let mut events = Parser::new_from_str(text).peekable();
        let mut outline = Self { items: Vec::new() };
        loop {
            match events.peek()? {
                Ok((Event::StreamEnd, _)) => return Some(outline),
                Ok((Event::MappingStart(..) | Event::SequenceStart(..) | Event::Scalar(..), _)) => {
                    outline.node(text, &mut events, 0)?;
                }
                Ok(_) => {
                    events.next();
                }
                Err(_) => return None,
            }
        }
    }

    fn node<'a>(
        &mut self,
        text: &str,
        events: &mut std::iter::Peekable<Parser<'a, serde_saphyr::granit_parser::StrInput<'a>>>,
        depth: usize,
    ) -> Option<Node> {
        loop {
            let (event, span) = events.next()?.ok()?;
            let start = span.start.byte_offset()?;
            let node_at = at(&span.start);
            match event {
                Event::Scalar(value, ..) => {
                    return Some(Node {
                        at: node_at,
                        start,
                        end: span.end.byte_offset()?,
                        scalar: Some(value.into_owned()),
                    });
                }
                Event::Alias(_) | Event::UnresolvedAlias(_) => {
                    return Some(Node {
                        at: node_at,
                        start,
                        end: span.end.byte_offset()?,
                        scalar: None,
                    });
                }
                Event::MappingStart(style, ..) | Event::SequenceStart(style, ..) => {
                    let map = matches!(event, Event::MappingStart(..));
                    let flow = style == StructureStyle::Flow;
                    let first = self.items.len();
                    let mut end = start;
                    loop {
                        if let Some(Ok((Event::MappingEnd | Event::SequenceEnd, close))) =
                            events.peek()
                        {
                            if flow {
                                end = close.end.byte_offset()?;
                            }
                            events.next();
                            break;
                        }
                        let item = if map {
                            let key = self.node(text, events, depth + 1)?;
                            let value = self.node(text, events, depth + 1)?;
                            Item {
                                key_at: Some(key.at),
                                key: key.scalar,
                                value_at: value.at,
                                start: key.start,
                                end: value.end.max(key.end),
                                flow,
                                alone: None,
                                depth,
                            }
                        } else {
                            let value = self.node(text, events, depth + 1)?;
                            let start = if flow {
                                value.start
                            } else {
                                dash_before(text, value.start)
                            };
                            Item {
                                key_at: None,
                                key: None,
                                value_at: value.at,
                                start,
                                end: value.end,
                                flow,
                                alone: None,
                                depth,
                            }
                        };
                        end = end.max(item.end);
                        self.items.push(item);
                    }
                    let mine: Vec<usize> = (first..self.items.len())
                        .filter(|&i| self.items[i].depth == depth)
                        .collect();
                    if !flow && let [only] = mine[..] {
                        self.items[only].alone = Some(if map { "{}" } else { "[]" });
                    }
                    return Some(Node {
                        at: node_at,
                        start,
                        end,
                        scalar: None,
                    });
                }
                Event::StreamEnd | Event::MappingEnd | Event::SequenceEnd => return None,
                _ => {}
            }
        }
    }

    /// What to blank for `fault` at `location`: for a key fault the entry
    /// whose key is there; for a value fault the outermost entry or item
    /// whose value starts there.
    fn find(self, fault: &Fault, location: Option<serde_saphyr::Location>) -> Option<Blank> {
        let location = location?;
        let target = (location.line(), location.column());
        let item = match fault {
            Fault::Missing(_) => return None,
            Fault::Key => self
                .items
                .into_iter()
                .filter(|i| i.key_at == Some(target))
                .max_by_key(|i| i.depth)?,
            Fault::Value => self
                .items
                .into_iter()
                .filter(|i| i.value_at == target)
                .min_by_key(|i| i.depth)?,
        };
        Some(Blank {
            start: item.start,
            end: item.end,
            flow: item.flow,
            alone: item.alone,
            key: item.key,
        })
    }
}

/// The start of a block list item: its `-`, if only spaces stand between.
fn dash_before(text: &str, start: usize) -> usize {
    let before = text[..start].trim_end_matches([' ', '\t']);
    if before.ends_with('-') {
        before.len() - 1
    } else {
        start
    }
}

/// A stretch of text to blank.
struct Blank {
    start: usize,
    end: usize,
    flow: bool,
    alone: Option<&'static str>,
    /// The blanked entry's key.
    key: Option<String>,
}

impl Blank {
    /// `text` with the stretch (and in flow style a comma after it) replaced
    /// by spaces, one per character: lines and columns do not move.
    fn apply(&self, text: &str) -> String {
        let mut end = self.end.min(text.len());
        if self.flow {
            let rest = &text[end..];
            let gap = rest.len() - rest.trim_start().len();
            if rest[gap..].starts_with(',') {
                end += gap + 1;
            }
        }
        let mut out = String::with_capacity(text.len());
        out.push_str(&text[..self.start]);
        let mut blanked: String = text[self.start..end]
            .chars()
            .map(|c| if c == '\n' || c == '\r' { c } else { ' ' })
            .collect();
        if let Some(empty) = self.alone {
            blanked.replace_range(..empty.len().min(blanked.len()), empty);
        }
        out.push_str(&blanked);
        out.push_str(&text[end..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        ports: Vec<u16>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        on: bool,
    }

    fn errors(text: &str) -> Vec<String> {
        match parse::<Doc>(text) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(|d| d.display("f").to_string()).collect(),
        }
    }

    #[test]
    fn block_keys_flow_keys_and_list_items_all_reported() {
        let text = "name: a\nnmae: b\ninner:\n  on: true\n  of: false\nlist:\n  - {on: true, xx: 1}\n  - on: maybe\nports: [1, 70000, 3]\nlast: 1\n";
        assert_eq!(
            errors(text),
            [
                "f:2:1: unknown field `nmae`, expected one of name, inner, list, ports",
                "f:5:3: unknown field `of`, expected one of on",
                "f:7:16: unknown field `xx`, expected one of on",
                "f:8:9: invalid boolean",
                "f:9:12: invalid u16",
                "f:10:1: unknown field `last`, expected one of name, inner, list, ports",
            ]
        );
    }

    #[test]
    fn a_lone_entry_leaves_an_empty_map_and_a_wrong_required_value_no_missing_field() {
        // The only key of `inner` goes: `inner` stays a map, not null.
        assert_eq!(
            errors("name: a\ninner:\n  of: 1\n"),
            ["f:3:3: unknown field `of`, expected one of on"]
        );
        // `name` is blanked for its type; "missing field `name`" would be ours.
        let errs = errors("name: [x]\nextra: 1\n");
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs[0].starts_with("f:1:7: "), "{errs:#?}");
        assert!(errs[1].starts_with("f:2:1: unknown field `extra`"));
        // A missing field the user left out is reported.
        assert_eq!(errors("inner: {}\n"), ["f:1:1: missing field `name`"]);
    }

    #[test]
    fn errors_stop_at_the_cap() {
        let mut text = "name: a\n".to_owned();
        for i in 0..MAX_ERRORS + 5 {
            text.push_str(&format!("k{i}: 1\n"));
        }
        let errs = errors(&text);
        assert_eq!(errs.len(), MAX_ERRORS + 1);
        assert!(
            errs[0].starts_with("f:2:1: unknown field `k0`"),
            "{errs:#?}"
        );
        assert!(errs[MAX_ERRORS - 1].starts_with("f:21:1: unknown field `k19`"));
        assert_eq!(
            errs[MAX_ERRORS],
            "f: stopped after 20 errors; fix these and validate again"
        );
    }

    #[test]
    fn clean_text_parses_and_a_syntax_error_is_reported_once() {
        assert!(parse::<Doc>("name: a\nlist: [{on: true}]\n").is_ok());
        let errs = errors("name: a\n x: [\n");
        assert_eq!(errs.len(), 1, "{errs:#?}");
    }
}
