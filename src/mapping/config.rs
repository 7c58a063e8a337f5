//! The YAML shape of `mapping` (profile, templated overrides, enum style)
//! and its validation into a [`Mapper`].

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Mapper, Overrides, Template};
use crate::config::common::{Diagnostics, Spanned};

/// `mapping`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MappingConfig {
    /// `nvsentinel` (NVSentinel HealthEvents documents), `raw` (any JSON
    /// document becomes `data`), `cloudevents` (each line is a structured
    /// CloudEvent already), `kubernetes-event` (a Kubernetes Event object) or
    /// `nomad` (Nomad events; `data` is the event). Default `cloudevents`
    /// for `source.nats` and `source.http`, `kubernetes-event` for
    /// `source.kubernetes` with `kind: events`, `nomad` for `source.nomad`,
    /// else `nvsentinel`.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// Overrides the CloudEvent `type`. A template: `{{metadata.KEY}}`,
    /// `{{id}}`, `{{subject}}` and `{{data.PATH}}` are replaced.
    #[serde(default, rename = "type")]
    pub ty: Option<Spanned<String>>,
    /// Overrides the CloudEvent `source`; a template like `type`.
    #[serde(default)]
    pub source: Option<Spanned<String>>,
    /// Overrides the CloudEvent `subject`; a template like `type`.
    #[serde(default)]
    pub subject: Option<Spanned<String>>,
    /// How the `nvsentinel` profile writes NVSentinel's enums
    /// (`recommendedAction`, `processingStrategy`): `numbers` (default, the
    /// protobuf numbers NVSentinel's own exporter sends) or `names`
    /// (`"COMPONENT_RESET"`). Routes and CEL accept names and numbers in
    /// both modes.
    #[serde(default)]
    pub enums: Option<Spanned<EnumStyle>>,
}

/// `mapping.enums`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EnumStyle {
    /// The enum's number, as NVSentinel's exporter sends it.
    #[default]
    Numbers,
    /// The enum's name.
    Names,
}

/// The mapping profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Profile {
    Nvsentinel,
    Raw,
    Cloudevents,
    /// A Kubernetes Event object (`source.kubernetes` with `kind: events`).
    #[serde(rename = "kubernetes-event", alias = "kubernetesEvent")]
    KubernetesEvent,
    Nomad,
}

impl MappingConfig {
    /// Compiles the mapping with `profile` (this config's, or the source's
    /// default) and the expanded `metadata`.
    pub fn compile(
        &self,
        profile: Profile,
        metadata: Map<String, Value>,
        diags: &mut Diagnostics,
    ) -> Mapper {
        if profile == Profile::Raw {
            for (value, key) in [(&self.ty, "type"), (&self.source, "source")] {
                if value.is_none() {
                    diags.error(
                        None,
                        format!("mapping.{key}: required by the raw mapping profile"),
                    );
                }
            }
        }
        let mut template = |value: &Option<Spanned<String>>, key: &str| {
            let value = value.as_ref()?;
            match Template::compile(&value.value, &metadata) {
                Ok(t) => Some(t),
                Err(e) => {
                    diags.error(Some(value.referenced), format!("mapping.{key}: {e}"));
                    None
                }
            }
        };
        let overrides = Overrides {
            ty: template(&self.ty, "type"),
            source: template(&self.source, "source"),
            subject: template(&self.subject, "subject"),
        };
        let enums = self.enums.as_ref().map(|e| {
            if profile != Profile::Nvsentinel {
                diags.warning(
                    Some(e.referenced),
                    "mapping.enums: only the nvsentinel profile writes NVSentinel's enums; ignored",
                );
            }
            e.value
        });
        Mapper::new(profile, metadata, overrides).with_enums(enums.unwrap_or_default())
    }
}
