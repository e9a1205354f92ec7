//! `imagePullPolicy` semantics, as a helper the kubelet calls before creating a container.
//!
//! [`PullPolicy::decide`] is the pure rule; [`ensure_image`] applies it to any runtime.

use crate::status::ImageInfo;
use crate::{Error, RegistryAuth, Result, Runtime};

/// A container's `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull every time a container is created.
    Always,
    /// Pull only when the image is not present locally.
    IfNotPresent,
    /// Never pull; fail with `ErrImageNeverPull` when absent.
    Never,
}

/// What to do about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullAction {
    /// Use the local copy.
    UseLocal,
    /// Pull from the registry.
    Pull,
    /// Fail: absent and the policy forbids pulling.
    FailNeverPull,
}

impl PullPolicy {
    /// Kubernetes' default: `Always` for `:latest` or untagged references without a digest,
    /// `IfNotPresent` otherwise.
    pub fn default_for(image: &str) -> PullPolicy {
        let without_digest = image.split('@').next().unwrap_or(image);
        let has_digest = without_digest.len() != image.len();
        // A tag follows the last ':' after the last '/', so "host:5000/app" is untagged.
        let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
        let tag = last_segment.split_once(':').map(|(_, tag)| tag);
        match (has_digest, tag) {
            (true, _) => PullPolicy::IfNotPresent,
            (false, None | Some("latest")) => PullPolicy::Always,
            (false, Some(_)) => PullPolicy::IfNotPresent,
        }
    }

    /// Parse the Kubernetes spelling (`Always`, `IfNotPresent`, `Never`).
    pub fn parse(value: &str) -> Option<PullPolicy> {
        match value {
            "Always" => Some(PullPolicy::Always),
            "IfNotPresent" => Some(PullPolicy::IfNotPresent),
            "Never" => Some(PullPolicy::Never),
            _ => None,
        }
    }

    /// The rule: what to do given whether the image is present.
    pub fn decide(self, present: bool) -> PullAction {
        match (self, present) {
            (PullPolicy::Always, _) => PullAction::Pull,
            (PullPolicy::IfNotPresent, true) | (PullPolicy::Never, true) => PullAction::UseLocal,
            (PullPolicy::IfNotPresent, false) => PullAction::Pull,
            (PullPolicy::Never, false) => PullAction::FailNeverPull,
        }
    }
}

/// Make sure `image` is present according to `policy`, pulling through `runtime` if needed.
///
/// With `Always`, a failed pull falls back to a local copy when there is one, as the kubelet
/// does for images imported with `skiff image import` (they exist in no registry).
pub async fn ensure_image(
    runtime: &dyn Runtime,
    image: &str,
    policy: PullPolicy,
    auth: &RegistryAuth,
) -> Result<ImageInfo> {
    let local = runtime.image_status(image).await?;
    match policy.decide(local.is_some()) {
        PullAction::UseLocal => local.ok_or_else(|| Error::ImageNotFound {
            image: image.to_owned(),
        }),
        PullAction::FailNeverPull => Err(Error::ImageNeverPull {
            image: image.to_owned(),
        }),
        PullAction::Pull => match runtime.pull_image(image, auth).await {
            Ok(info) => Ok(info),
            Err(error) => match local {
                Some(info) => {
                    tracing::warn!(image, %error, "pull failed; using the local image");
                    Ok(info)
                }
                None => Err(error),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_kubernetes() {
        use PullPolicy::*;
        let cases = [
            ("hello", Always),
            ("hello:latest", Always),
            ("hello:v1", IfNotPresent),
            ("127.0.0.1:5000/app", Always),
            ("127.0.0.1:5000/app:v2", IfNotPresent),
            ("app@sha256:abcd", IfNotPresent),
            ("app:latest@sha256:abcd", IfNotPresent),
        ];
        for (image, policy) in cases {
            assert_eq!(PullPolicy::default_for(image), policy, "{image}");
        }
    }

    #[test]
    fn decisions() {
        use PullAction::*;
        assert_eq!(PullPolicy::Always.decide(true), Pull);
        assert_eq!(PullPolicy::IfNotPresent.decide(true), UseLocal);
        assert_eq!(PullPolicy::IfNotPresent.decide(false), Pull);
        assert_eq!(PullPolicy::Never.decide(true), UseLocal);
        assert_eq!(PullPolicy::Never.decide(false), FailNeverPull);
        assert_eq!(PullPolicy::parse("Never"), Some(PullPolicy::Never));
        assert_eq!(PullPolicy::parse("never"), None);
    }
}
