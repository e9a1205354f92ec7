//! Which runtime runs a container: the pod's RuntimeClass handler when it names one,
//! otherwise the image kind — a wasm image (in the local wasm store, or pullable as a wasm
//! OCI artifact) runs on `wasmtime`, anything else on `docker`.
//!
//! [`choose_by_image`] is the pure rule over what the runtimes reported; [`Selector`] does the
//! look-ups (RuntimeClass objects, `image_status`, a trial wasm pull).

use std::sync::Arc;

use k8s_openapi::api::node::v1::RuntimeClass;
use kube::{Api, Client};
use skiff_runtimes::{RegistryAuth, Runtime, RuntimeRegistry};

/// Handler name of the WebAssembly runtime.
pub const WASM_HANDLER: &str = "wasmtime";
/// Handler name of the OCI runtime.
pub const OCI_HANDLER: &str = "docker";

/// Why no runtime can run a pod; the message is shown in the pod condition and event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectError(pub String);

/// What is known about an image when no RuntimeClass decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFacts {
    /// The wasm runtime has it locally (or could pull it as a wasm artifact).
    pub wasm: bool,
    /// The OCI runtime has it locally.
    pub oci_local: bool,
}

/// The rule when no RuntimeClass decides. `handlers` are the registered ones, the default
/// first.
pub fn choose_by_image(handlers: &[String], facts: ImageFacts) -> Result<String, SelectError> {
    let has = |h: &str| handlers.iter().any(|x| x == h);
    if facts.wasm && has(WASM_HANDLER) {
        return Ok(WASM_HANDLER.to_owned());
    }
    if has(OCI_HANDLER) {
        return Ok(OCI_HANDLER.to_owned());
    }
    match handlers {
        [] => Err(SelectError(
            "no container runtime is registered on this node".to_owned(),
        )),
        [only] if only != WASM_HANDLER => Ok(only.clone()),
        _ if has(WASM_HANDLER) => Ok(WASM_HANDLER.to_owned()),
        [first, ..] => Ok(first.clone()),
    }
}

/// Resolves handlers for containers.
#[derive(Clone)]
pub struct Selector {
    client: Client,
    runtimes: RuntimeRegistry,
    /// Registered handlers, default first.
    handlers: Vec<String>,
}

impl Selector {
    /// A selector over `runtimes`; `default` (if registered) is tried first.
    pub fn new(client: Client, runtimes: RuntimeRegistry) -> Self {
        let handlers = runtimes.handlers().map(str::to_owned).collect();
        Selector {
            client,
            runtimes,
            handlers,
        }
    }

    /// Registered handler names.
    pub fn handlers(&self) -> &[String] {
        &self.handlers
    }

    /// The runtime registered under `handler`.
    pub fn runtime(&self, handler: &str) -> Result<Arc<dyn Runtime>, SelectError> {
        self.runtimes.get(handler).map_err(|_| {
            SelectError(format!(
                "no runtime for handler \"{handler}\" on this node (available: {})",
                self.handlers.join(", ")
            ))
        })
    }

    /// The handler a RuntimeClass maps to; errors name the RuntimeClass or handler.
    pub async fn runtime_class_handler(&self, name: &str) -> Result<String, SelectError> {
        let api: Api<RuntimeClass> = Api::all(self.client.clone());
        let class = match api.get_opt(name).await {
            Ok(Some(class)) => class,
            Ok(None) => return Err(SelectError(format!("RuntimeClass \"{name}\" not found"))),
            Err(e) => {
                return Err(SelectError(format!(
                    "cannot read RuntimeClass \"{name}\": {e}"
                )));
            }
        };
        self.runtime(&class.handler)?;
        Ok(class.handler)
    }

    /// The handler for `image` when no RuntimeClass decides: a wasm image present locally,
    /// else an OCI image present locally, else whatever a trial wasm pull says (made only
    /// when an OCI runtime is there to take the image otherwise).
    pub async fn by_image(&self, image: &str) -> Result<String, SelectError> {
        let present = |handler: &str| {
            let runtime = self.runtimes.get(handler).ok();
            async move {
                match runtime {
                    Some(runtime) => runtime.image_status(image).await.ok().flatten().is_some(),
                    None => false,
                }
            }
        };
        let wasm_local = present(WASM_HANDLER).await;
        let oci_local = !wasm_local && present(OCI_HANDLER).await;
        let wasm = wasm_local
            || (!oci_local
                && match self.runtimes.get(WASM_HANDLER) {
                    Ok(runtime) => {
                        is_pullable_wasm(&*runtime, image, self.runtimes.get(OCI_HANDLER).is_ok())
                            .await
                    }
                    Err(_) => false,
                });
        choose_by_image(&self.handlers, ImageFacts { wasm, oci_local })
    }
}

/// Whether the wasm runtime can pull `image` as a wasm artifact. Without an OCI runtime the
/// answer is yes without trying: the image has nowhere else to go, and the real pull reports
/// the error.
async fn is_pullable_wasm(runtime: &dyn Runtime, image: &str, oci_available: bool) -> bool {
    if !oci_available {
        return true;
    }
    match runtime.pull_image(image, &RegistryAuth::Anonymous).await {
        Ok(_) => true,
        Err(error) => {
            tracing::debug!(image, %error, "not a wasm artifact; using the OCI runtime");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handlers(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn image_kind_decides() {
        let both = handlers(&["wasmtime", "docker"]);
        let wasm = ImageFacts {
            wasm: true,
            oci_local: false,
        };
        let oci = ImageFacts {
            wasm: false,
            oci_local: true,
        };
        let unknown = ImageFacts {
            wasm: false,
            oci_local: false,
        };
        assert_eq!(choose_by_image(&both, wasm).expect("wasm"), "wasmtime");
        assert_eq!(choose_by_image(&both, oci).expect("oci"), "docker");
        assert_eq!(
            choose_by_image(&both, unknown).expect("pull with docker"),
            "docker"
        );
        // Only wasmtime: everything goes there (and fails there with a clear pull error).
        assert_eq!(
            choose_by_image(&handlers(&["wasmtime"]), unknown).expect("wasm only"),
            "wasmtime"
        );
        // A single third-party or fake runtime takes everything.
        assert_eq!(
            choose_by_image(&handlers(&["fake"]), unknown).expect("fake"),
            "fake"
        );
        assert!(choose_by_image(&[], wasm).is_err());
    }
}
