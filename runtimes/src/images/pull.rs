//! Pulling wasm OCI artifacts from a registry with `oci-client`.
//!
//! A wasm artifact is a manifest whose config is `application/vnd.wasm.config.v0+json` (older
//! tools use other config types; those are accepted) with exactly one wasm layer, typed
//! `application/wasm` or the older `application/vnd.wasm.content.layer.v1+wasm`. Registries
//! on loopback (`localhost`, `127.0.0.1`, `[::1]`) and those listed as insecure are spoken to
//! over plain HTTP, everything else over HTTPS (rustls with the ring provider).

use crate::RegistryAuth;

/// The config media type of wasm OCI artifacts.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The current wasm layer media type.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The older wasm layer media type (wasm-to-oci, early runwasi).
pub const WASM_LAYER_MEDIA_TYPE_V1: &str = "application/vnd.wasm.content.layer.v1+wasm";

/// Errors of a pull.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference cannot be parsed.
    #[error("invalid reference: {0}")]
    Reference(String),
    /// The registry conversation failed (unreachable, unauthorized, not found, ...).
    #[error("registry {registry}: {source}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What oci-client reported.
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    /// The artifact is not a single-layer wasm artifact.
    #[error("not a wasm artifact: {0}")]
    NotWasm(String),
}

/// What a pull produced.
#[derive(Debug, Clone)]
pub struct PulledWasm {
    /// The wasm bytes.
    pub bytes: Vec<u8>,
    /// The manifest digest the registry served.
    pub manifest_digest: Option<String>,
    /// The layer's media type.
    pub media_type: String,
}

/// Pulls wasm artifacts. Cheap to create; holds only configuration.
#[derive(Debug, Clone, Default)]
pub struct Puller {
    insecure: Vec<String>,
}

impl Puller {
    /// A puller that also uses plain HTTP for the given `host:port` registries.
    pub fn new(insecure_registries: Vec<String>) -> Self {
        Puller {
            insecure: insecure_registries,
        }
    }

    /// Whether `registry` (`host[:port]`) is spoken to over plain HTTP.
    pub fn is_plain_http(&self, registry: &str) -> bool {
        let host = match registry.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None => registry.split(':').next().unwrap_or_default(),
        };
        matches!(host, "localhost" | "127.0.0.1" | "::1")
            || self.insecure.iter().any(|r| r == registry)
    }

    fn client(&self, registry: &str) -> oci_client::Client {
        // reqwest is built without a default crypto provider (see MEASURED.md: two providers
        // panic); make sure ring is installed. Failing means one is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let protocol = if self.is_plain_http(registry) {
            oci_client::client::ClientProtocol::Http
        } else {
            oci_client::client::ClientProtocol::Https
        };
        oci_client::Client::new(oci_client::client::ClientConfig {
            protocol,
            ..Default::default()
        })
    }

    /// Pull `reference` and return its wasm layer.
    pub async fn pull(
        &self,
        reference: &str,
        auth: &RegistryAuth,
    ) -> Result<PulledWasm, PullError> {
        let parsed: oci_client::Reference = reference
            .parse()
            .map_err(|e: oci_client::ParseError| PullError::Reference(e.to_string()))?;
        let registry = parsed.resolve_registry().to_owned();
        let auth = match auth {
            RegistryAuth::Anonymous => oci_client::secrets::RegistryAuth::Anonymous,
            RegistryAuth::Basic { username, password } => {
                oci_client::secrets::RegistryAuth::Basic(username.clone(), password.clone())
            }
        };
        let client = self.client(&registry);
        let data = client
            .pull(
                &parsed,
                &auth,
                vec![WASM_LAYER_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE_V1],
            )
            .await
            .map_err(|source| match source {
                oci_client::errors::OciDistributionError::IncompatibleLayerMediaTypeError(t) => {
                    PullError::NotWasm(format!("layer media type {t}"))
                }
                source => PullError::Registry {
                    registry: registry.clone(),
                    source,
                },
            })?;
        let mut layers = data.layers.into_iter();
        let (Some(layer), None) = (layers.next(), layers.next()) else {
            return Err(PullError::NotWasm(
                "expected exactly one wasm layer".to_owned(),
            ));
        };
        if data.config.media_type != WASM_CONFIG_MEDIA_TYPE {
            tracing::debug!(
                reference, config = %data.config.media_type,
                "wasm artifact with a non-standard config media type"
            );
        }
        tracing::info!(reference, bytes = layer.data.len(), "pulled wasm artifact");
        Ok(PulledWasm {
            bytes: layer.data.to_vec(),
            manifest_digest: data.digest,
            media_type: layer.media_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_use_plain_http() {
        let puller = Puller::new(vec!["registry.lan:5000".into()]);
        assert!(puller.is_plain_http("127.0.0.1:5000"));
        assert!(puller.is_plain_http("localhost:1234"));
        assert!(puller.is_plain_http("[::1]:5000"));
        assert!(puller.is_plain_http("registry.lan:5000"));
        assert!(!puller.is_plain_http("registry.lan:5001"));
        assert!(!puller.is_plain_http("ghcr.io"));
    }
}
