//! Pulling (and pushing) wasm OCI artifacts from a registry with `oci-client`.
//!
//! A wasm artifact is a manifest whose config is `application/vnd.wasm.config.v0+json` (older
//! tools use other config types; those are accepted) with exactly one wasm layer, typed
//! `application/wasm` or the older `application/vnd.wasm.content.layer.v1+wasm`. Registries
//! on loopback (`localhost`, `127.0.0.1`, `[::1]`) and those listed as insecure are spoken to
//! over plain HTTP, everything else over HTTPS (rustls with the ring provider).
//!
//! Pulls report progress as [`ProgressEvent`]s in Docker's words (`Pulling fs layer`,
//! `Downloading`, `Pull complete`), so one renderer draws wasm and Docker pulls alike.
//! [`Puller::artifact_kind`] reads only the manifest and tells a wasm artifact from a
//! container image, which is how `skiff image pull` picks the store. Pushing is in
//! [`push`](super::push).

use futures::TryStreamExt;
use oci_client::manifest::{OciDescriptor, OciImageManifest};

use super::progress::ProgressEvent;
use crate::RegistryAuth;

/// The config media type of wasm OCI artifacts.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The current wasm layer media type.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The older wasm layer media type (wasm-to-oci, early runwasi).
pub const WASM_LAYER_MEDIA_TYPE_V1: &str = "application/vnd.wasm.content.layer.v1+wasm";

/// Errors of a pull or push.
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
    /// Reading the layer from the registry failed half-way.
    #[error("registry {registry}: reading layer {digest}: {source}")]
    Transfer {
        /// The registry host.
        registry: String,
        /// The layer's digest.
        digest: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The layer's content does not match its digest.
    #[error("layer {expected} from {registry} hashes to {actual}")]
    Digest {
        /// The registry host.
        registry: String,
        /// The digest the manifest names.
        expected: String,
        /// What the bytes hash to.
        actual: String,
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

/// What a registry holds under a reference, judged from its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A wasm artifact: goes to the wasm store.
    Wasm,
    /// Anything else (a container image): goes to Docker.
    ContainerImage,
}

/// Pulls and pushes wasm artifacts. Cheap to create; holds only configuration.
#[derive(Debug, Clone, Default)]
pub struct Puller {
    insecure: Vec<String>,
}

/// Whether a media type names a wasm layer.
fn is_wasm_layer(media_type: &str) -> bool {
    matches!(media_type, WASM_LAYER_MEDIA_TYPE | WASM_LAYER_MEDIA_TYPE_V1)
}

/// The manifest's single wasm layer, or why it is not a wasm artifact.
fn wasm_layer(manifest: &OciImageManifest) -> Result<&OciDescriptor, PullError> {
    match manifest.layers.as_slice() {
        [layer] if is_wasm_layer(&layer.media_type) => Ok(layer),
        [layer] => Err(PullError::NotWasm(format!(
            "layer media type {}",
            layer.media_type
        ))),
        layers => Err(PullError::NotWasm(format!(
            "expected exactly one wasm layer, found {} layers",
            layers.len()
        ))),
    }
}

/// `a1b2c3d4e5f6`: the first twelve hex digits of a digest, as Docker names layers.
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    &hex[..hex.len().min(12)]
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

    pub(super) fn client(&self, registry: &str) -> oci_client::Client {
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

    /// Parse `reference`; its registry host and the client for it.
    pub(super) fn connect(
        &self,
        reference: &str,
    ) -> Result<(oci_client::Reference, String, oci_client::Client), PullError> {
        let parsed: oci_client::Reference = reference
            .parse()
            .map_err(|e: oci_client::ParseError| PullError::Reference(e.to_string()))?;
        let registry = parsed.resolve_registry().to_owned();
        let client = self.client(&registry);
        Ok((parsed, registry, client))
    }

    /// Pull `reference` and return its wasm layer.
    pub async fn pull(
        &self,
        reference: &str,
        auth: &RegistryAuth,
    ) -> Result<PulledWasm, PullError> {
        self.pull_with_progress(reference, auth, &mut |_| {}).await
    }

    /// Whether `reference` is a wasm artifact or a container image, from its manifest alone.
    pub async fn artifact_kind(
        &self,
        reference: &str,
        auth: &RegistryAuth,
    ) -> Result<ArtifactKind, PullError> {
        let (parsed, registry, client) = self.connect(reference)?;
        let (manifest, _) = client
            .pull_image_manifest(&parsed, &oci_auth(auth))
            .await
            .map_err(|source| PullError::Registry {
                registry: registry.clone(),
                source,
            })?;
        let wasm = manifest.config.media_type == WASM_CONFIG_MEDIA_TYPE
            || manifest.layers.iter().any(|l| is_wasm_layer(&l.media_type));
        Ok(if wasm {
            ArtifactKind::Wasm
        } else {
            ArtifactKind::ContainerImage
        })
    }

    /// Pull `reference` and return its wasm layer, reporting progress in Docker's words.
    pub async fn pull_with_progress(
        &self,
        reference: &str,
        auth: &RegistryAuth,
        progress: &mut (dyn FnMut(&ProgressEvent) + Send),
    ) -> Result<PulledWasm, PullError> {
        let (parsed, registry, client) = self.connect(reference)?;
        let registry_error = |source| PullError::Registry {
            registry: registry.clone(),
            source,
        };
        progress(&ProgressEvent::image(format!(
            "{}: Pulling from {}",
            parsed.tag().or(parsed.digest()).unwrap_or("latest"),
            parsed.repository()
        )));
        let (manifest, manifest_digest) = client
            .pull_image_manifest(&parsed, &oci_auth(auth))
            .await
            .map_err(registry_error)?;
        let layer = wasm_layer(&manifest)?;
        if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
            tracing::debug!(
                reference, config = %manifest.config.media_type,
                "wasm artifact with a non-standard config media type"
            );
        }
        let short = short_digest(&layer.digest).to_owned();
        let total = u64::try_from(layer.size).ok().filter(|size| *size > 0);
        progress(&ProgressEvent::layer(
            &short,
            "Pulling fs layer",
            None,
            None,
        ));
        let mut stream = client
            .pull_blob_stream(&parsed, layer)
            .await
            .map_err(registry_error)?;
        let capacity = total.and_then(|t| usize::try_from(t).ok()).unwrap_or(0);
        let mut bytes = Vec::with_capacity(capacity.min(256 << 20));
        while let Some(chunk) =
            stream
                .stream
                .try_next()
                .await
                .map_err(|source| PullError::Transfer {
                    registry: registry.clone(),
                    digest: layer.digest.clone(),
                    source,
                })?
        {
            bytes.extend_from_slice(&chunk);
            progress(&ProgressEvent::layer(
                &short,
                "Downloading",
                Some(bytes.len() as u64),
                total,
            ));
        }
        let actual = super::sha256_digest(&bytes);
        if layer.digest.starts_with("sha256:") && actual != layer.digest {
            return Err(PullError::Digest {
                registry,
                expected: layer.digest.clone(),
                actual,
            });
        }
        progress(&ProgressEvent::layer(
            &short,
            "Download complete",
            None,
            None,
        ));
        progress(&ProgressEvent::layer(&short, "Pull complete", None, None));
        progress(&ProgressEvent::image(format!("Digest: {manifest_digest}")));
        tracing::info!(reference, bytes = bytes.len(), "pulled wasm artifact");
        Ok(PulledWasm {
            bytes,
            manifest_digest: Some(manifest_digest),
            media_type: layer.media_type.clone(),
        })
    }
}

/// oci-client's form of the credentials.
pub(super) fn oci_auth(auth: &RegistryAuth) -> oci_client::secrets::RegistryAuth {
    match auth {
        RegistryAuth::Anonymous => oci_client::secrets::RegistryAuth::Anonymous,
        RegistryAuth::Basic { username, password } => {
            oci_client::secrets::RegistryAuth::Basic(username.clone(), password.clone())
        }
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

    #[test]
    fn short_digests_are_twelve_hex_digits() {
        assert_eq!(short_digest("sha256:0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_digest("abc"), "abc");
    }

    fn descriptor(media_type: &str) -> OciDescriptor {
        OciDescriptor {
            media_type: media_type.to_owned(),
            digest: "sha256:00".to_owned(),
            size: 1,
            ..OciDescriptor::default()
        }
    }

    #[test]
    fn only_single_wasm_layers_are_wasm_artifacts() {
        let manifest = |layers: Vec<OciDescriptor>| OciImageManifest {
            layers,
            ..OciImageManifest::default()
        };
        for media_type in [WASM_LAYER_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE_V1] {
            assert!(wasm_layer(&manifest(vec![descriptor(media_type)])).is_ok());
        }
        let tar = manifest(vec![descriptor("application/vnd.oci.image.layer.v1.tar")]);
        let error = wasm_layer(&tar).expect_err("a tar layer");
        assert!(error.to_string().contains("v1.tar"), "{error}");
        let two = manifest(vec![
            descriptor(WASM_LAYER_MEDIA_TYPE),
            descriptor(WASM_LAYER_MEDIA_TYPE),
        ]);
        let error = wasm_layer(&two).expect_err("two layers");
        assert!(error.to_string().contains("2 layers"), "{error}");
    }
}
