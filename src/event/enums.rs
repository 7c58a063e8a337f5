//! NVSentinel's protobuf enums (`RecommendedAction`, `ProcessingStrategy`):
//! the numbers its event exporter sends on the wire and the names people
//! write in routes and CEL. The mapping writes one or the other
//! (`mapping.enums`); routes and CEL accept both, through these tables.

/// `RecommendedAction` (NVSentinel `data-models/protobufs/health_event.proto`).
pub const RECOMMENDED_ACTION: &[(i64, &str)] = &[
    (0, "NONE"),
    (2, "COMPONENT_RESET"),
    (5, "CONTACT_SUPPORT"),
    (6, "RUN_FIELDDIAG"),
    (15, "RESTART_VM"),
    (24, "RESTART_BM"),
    (25, "REPLACE_VM"),
    (26, "RUN_DCGMEUD"),
    (27, "CUSTOM"),
    (99, "UNKNOWN"),
];

/// `ProcessingStrategy`.
pub const PROCESSING_STRATEGY: &[(i64, &str)] = &[
    (0, "UNSPECIFIED"),
    (1, "EXECUTE_REMEDIATION"),
    (2, "STORE_ONLY"),
    (3, "STORE_AND_ANALYSE"),
];

/// The event data paths whose values are one of these enums, with the table.
pub const ENUM_PATHS: &[(&str, &[(i64, &str)])] = &[
    ("data.healthEvent.recommendedAction", RECOMMENDED_ACTION),
    ("data.healthEvent.processingStrategy", PROCESSING_STRATEGY),
];

/// The enum table of a path written in a route (`None` for other paths).
pub fn table_for(path: &str) -> Option<&'static [(i64, &'static str)]> {
    ENUM_PATHS.iter().find(|(p, _)| *p == path).map(|(_, t)| *t)
}

/// The name of `n`, or its decimal form when the table has none (as Go's
/// `String()` of an unknown protobuf enum value gives).
pub fn name(table: &[(i64, &'static str)], n: i64) -> std::borrow::Cow<'static, str> {
    match table.iter().find(|(v, _)| *v == n) {
        Some((_, name)) => std::borrow::Cow::Borrowed(name),
        None => std::borrow::Cow::Owned(n.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_unknown_numbers() {
        assert_eq!(name(RECOMMENDED_ACTION, 2), "COMPONENT_RESET");
        assert_eq!(name(RECOMMENDED_ACTION, 12345), "12345");
        assert_eq!(name(PROCESSING_STRATEGY, 3), "STORE_AND_ANALYSE");
        assert!(table_for("data.healthEvent.recommendedAction").is_some());
        assert!(table_for("data.healthEvent.nodeName").is_none());
    }
}
