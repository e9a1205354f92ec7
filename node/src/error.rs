//! The node agent's top-level error: what makes [`run_node`](crate::run_node) or
//! [`run_fake_nodes`](crate::run_fake_nodes) give up. Per-pod failures never end up here;
//! they become pod conditions and events.

/// Why the node agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed where the agent cannot go on without it.
    #[error("{context}: {source}")]
    Api {
        /// What was being done (`register node n1`, ...).
        context: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Preparing the data dir failed.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Setting up the pod network failed.
    #[error("pod network: {0}")]
    Network(#[from] crate::network::NetworkError),
    /// The kubelet server could not start.
    #[error("kubelet server: {0}")]
    Server(#[from] crate::server::ServerError),
    /// A task of the agent panicked (a bug).
    #[error("node agent task panicked: {0}")]
    Panicked(String),
    /// The configuration is unusable.
    #[error("invalid node configuration: {0}")]
    Config(String),
}

impl Error {
    /// Shorthand for an [`Error::Api`].
    pub fn api(context: impl Into<String>, source: kube::Error) -> Self {
        Error::Api {
            context: context.into(),
            source,
        }
    }
}
