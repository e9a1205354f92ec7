//! `imagePullPolicy` semantics: Kubernetes' default (`Always` for `:latest` or untagged
//! references, `IfNotPresent` otherwise) and what to do given whether the image is present.

/// A container's `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull every time a container starts.
    Always,
    /// Pull only when absent.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// What to do about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullAction {
    /// Use the local copy.
    UseLocal,
    /// Pull from the registry.
    Pull,
    /// Fail with `ErrImageNeverPull`.
    FailNeverPull,
}

impl PullPolicy {
    /// Parse the Kubernetes spelling.
    pub fn parse(value: &str) -> Option<PullPolicy> {
        match value {
            "Always" => Some(PullPolicy::Always),
            "IfNotPresent" => Some(PullPolicy::IfNotPresent),
            "Never" => Some(PullPolicy::Never),
            _ => None,
        }
    }

    /// Kubernetes' default for `image`.
    pub fn default_for(image: &str) -> PullPolicy {
        let without_digest = image.split('@').next().unwrap_or(image);
        if without_digest.len() != image.len() {
            return PullPolicy::IfNotPresent;
        }
        let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
        match last.split_once(':').map(|(_, tag)| tag) {
            None | Some("latest") => PullPolicy::Always,
            Some(_) => PullPolicy::IfNotPresent,
        }
    }

    /// The rule.
    pub fn decide(self, present: bool) -> PullAction {
        match (self, present) {
            (PullPolicy::Always, _) => PullAction::Pull,
            (_, true) => PullAction::UseLocal,
            (PullPolicy::IfNotPresent, false) => PullAction::Pull,
            (PullPolicy::Never, false) => PullAction::FailNeverPull,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_decisions() {
        use PullPolicy::*;
        for (image, want) in [
            ("busybox", Always),
            ("busybox:latest", Always),
            ("busybox:1.36", IfNotPresent),
            ("127.0.0.1:5000/app", Always),
            ("127.0.0.1:5000/app:v2", IfNotPresent),
            ("app@sha256:ab", IfNotPresent),
        ] {
            assert_eq!(PullPolicy::default_for(image), want, "{image}");
        }
        assert_eq!(Always.decide(true), PullAction::Pull);
        assert_eq!(IfNotPresent.decide(true), PullAction::UseLocal);
        assert_eq!(IfNotPresent.decide(false), PullAction::Pull);
        assert_eq!(Never.decide(false), PullAction::FailNeverPull);
        assert_eq!(Never.decide(true), PullAction::UseLocal);
        assert_eq!(PullPolicy::parse("Never"), Some(Never));
        assert_eq!(PullPolicy::parse("never"), None);
    }
}
