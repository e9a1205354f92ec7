//! Pushing a wasm image from the local store to a registry as a wasm OCI artifact.
//!
//! The artifact is what [`Puller`] reads back (and what `wkg`/runwasi publish): a manifest
//! whose config has media type [`WASM_CONFIG_MEDIA_TYPE`] and whose single layer is the wasm
//! binary, typed [`WASM_LAYER_MEDIA_TYPE`]. The config records the architecture (`wasm`) and
//! the target (`wasip1` for a core module, `wasip2` for a component).

use serde_json::json;

use super::progress::ProgressEvent;
use super::pull::{
    PullError, Puller, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE, oci_auth, short_digest,
};
use crate::RegistryAuth;

/// What a push left in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedWasm {
    /// The manifest's digest (`sha256:...`): pull `repo@<digest>` to get exactly this.
    pub manifest_digest: String,
    /// The layer's digest (the wasm bytes').
    pub layer_digest: String,
    /// Bytes pushed in the layer.
    pub size: u64,
}

/// `wasip2` for a component, `wasip1` for a core module (by the binary's version field).
pub fn wasm_target(bytes: &[u8]) -> &'static str {
    // Core modules are version 1 (`01 00 00 00`); components use layer 1 (`.. .. 01 00`).
    match bytes.get(4..8) {
        Some([_, _, 1, 0]) => "wasip2",
        _ => "wasip1",
    }
}

/// The config blob of a wasm artifact whose layer has `layer_digest`.
fn config_blob(bytes: &[u8], layer_digest: &str) -> Vec<u8> {
    json!({
        "architecture": "wasm",
        "os": wasm_target(bytes),
        "layerDigests": [layer_digest],
    })
    .to_string()
    .into_bytes()
}

impl Puller {
    /// Push `bytes` (a wasm module or component) to `reference` as a wasm OCI artifact,
    /// reporting progress in Docker's words (`Preparing`, `Pushing`, `Pushed`, then the
    /// manifest digest).
    pub async fn push_wasm(
        &self,
        reference: &str,
        bytes: Vec<u8>,
        auth: &RegistryAuth,
        progress: &mut (dyn FnMut(&ProgressEvent) + Send),
    ) -> Result<PushedWasm, PullError> {
        let (parsed, registry, client) = self.connect(reference)?;
        let registry_error = |source| PullError::Registry {
            registry: registry.clone(),
            source,
        };
        let size = bytes.len() as u64;
        let layer_digest = super::sha256_digest(&bytes);
        let short = short_digest(&layer_digest).to_owned();
        progress(&ProgressEvent::image(format!(
            "The push refers to repository [{registry}/{}]",
            parsed.repository()
        )));
        progress(&ProgressEvent::layer(&short, "Preparing", None, None));
        let config = oci_client::client::Config::new(
            config_blob(&bytes, &layer_digest),
            WASM_CONFIG_MEDIA_TYPE.to_owned(),
            None,
        );
        let layer =
            oci_client::client::ImageLayer::new(bytes, WASM_LAYER_MEDIA_TYPE.to_owned(), None);
        let mut manifest = oci_client::manifest::OciImageManifest::build(
            std::slice::from_ref(&layer),
            &config,
            None,
        );
        manifest.artifact_type = Some(WASM_CONFIG_MEDIA_TYPE.to_owned());

        client
            .store_auth_if_needed(&registry, &oci_auth(auth))
            .await;
        progress(&ProgressEvent::layer(
            &short,
            "Pushing",
            Some(0),
            Some(size),
        ));
        let exists = client
            .blob_exists(&parsed, &layer_digest)
            .await
            .map_err(registry_error)?;
        if exists {
            progress(&ProgressEvent::layer(
                &short,
                "Layer already exists",
                None,
                None,
            ));
        } else {
            client
                .push_blob(&parsed, layer.data, &layer_digest)
                .await
                .map_err(registry_error)?;
            progress(&ProgressEvent::layer(
                &short,
                "Pushing",
                Some(size),
                Some(size),
            ));
            progress(&ProgressEvent::layer(&short, "Pushed", None, None));
        }
        client
            .push_blob(&parsed, config.data, &manifest.config.digest)
            .await
            .map_err(registry_error)?;
        let manifest = oci_client::manifest::OciManifest::Image(manifest);
        client
            .push_manifest(&parsed, &manifest)
            .await
            .map_err(registry_error)?;
        let manifest_digest = client
            .fetch_manifest_digest(&parsed, &oci_auth(auth))
            .await
            .map_err(registry_error)?;
        progress(&ProgressEvent::image(format!(
            "{}: digest: {manifest_digest} size: {size}",
            parsed.tag().unwrap_or("latest")
        )));
        tracing::info!(reference, %manifest_digest, size, "pushed wasm artifact");
        Ok(PushedWasm {
            manifest_digest,
            layer_digest,
            size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_and_components_get_their_target() {
        let module = wat::parse_str("(module)").expect("module");
        assert_eq!(wasm_target(&module), "wasip1");
        assert_eq!(wasm_target(b"\0asm\x0d\x00\x01\x00"), "wasip2");
        assert_eq!(wasm_target(b"short"), "wasip1");
        let config: serde_json::Value =
            serde_json::from_slice(&config_blob(&module, "sha256:ab")).expect("json");
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["layerDigests"][0], "sha256:ab");
    }
}
