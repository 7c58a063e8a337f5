//! Hand-written deserialisation of route rules: a rule is an open map of
//! condition paths (plus `receiver`), and each pattern keeps its position.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::config::{PatternValue, RuleConfig};
use crate::config::common::Spanned;

impl<'de> Deserialize<'de> for RuleConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RuleConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a rule: a map of `path: pattern` conditions, an optional CEL `expr` and an optional `receiver`",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RuleConfig, A::Error> {
                let mut rule = RuleConfig::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "receiver" {
                        if rule.receiver.is_some() {
                            return Err(de::Error::duplicate_field("receiver"));
                        }
                        rule.receiver = Some(map.next_value()?);
                    } else if key == "expr" {
                        if rule.expr.is_some() {
                            return Err(de::Error::duplicate_field("expr"));
                        }
                        rule.expr = Some(map.next_value()?);
                    } else {
                        rule.conditions.push((key, map.next_value()?));
                    }
                }
                Ok(rule)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for PatternValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PatternValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pattern (string, number or boolean) or a map of nested fields")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PatternValue, E> {
                Ok(PatternValue::String(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<PatternValue, E> {
                Ok(PatternValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PatternValue, E> {
                Ok(PatternValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PatternValue, E> {
                Ok(PatternValue::Uint(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PatternValue, E> {
                Ok(PatternValue::Float(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<PatternValue, E> {
                Ok(PatternValue::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<PatternValue, E> {
                Ok(PatternValue::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PatternValue, A::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    fields.push((key, map.next_value::<Spanned<PatternValue>>()?));
                }
                Ok(PatternValue::Map(fields))
            }
        }
        d.deserialize_any(V)
    }
}
