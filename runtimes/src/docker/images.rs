//! OCI images in Docker's own store: pull and push with progress, import, list, remove.
//!
//! Pulls and pushes report Docker's per-layer progress messages as [`ProgressEvent`]s;
//! [`TransferProgress`] folds them into one "bytes done / bytes known" figure a CLI can draw
//! as a single bar. `import` takes either a root file system tarball (`docker import`) or an
//! image archive written by `docker save` (`docker load`), told apart by the archive's
//! `manifest.json`.

use std::path::Path;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{ImageInspect, ProgressDetail};
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ImportImageOptionsBuilder, ListImagesOptionsBuilder,
    PushImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures::StreamExt;

use super::client::{Connection, DockerError, is_not_found, message_of, status_of};
pub use crate::images::progress::{ProgressEvent, TransferProgress};
use crate::status::ImageInfo;
use crate::{Error, RegistryAuth};

/// A progress message from Docker's pull or push stream.
fn event_of(
    id: Option<String>,
    status: Option<String>,
    detail: Option<ProgressDetail>,
) -> ProgressEvent {
    let to_u64 = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    let detail = detail.unwrap_or_default();
    ProgressEvent {
        layer: id,
        status: status.unwrap_or_default(),
        current: to_u64(detail.current),
        total: to_u64(detail.total).filter(|t| *t > 0),
    }
}

/// A reference in the form Docker's API takes, with `latest` added when there is no tag or
/// digest (an untagged pull would fetch every tag).
pub fn normalize(image: &str) -> Result<String, Error> {
    let parsed: oci_client::Reference =
        image
            .trim()
            .parse()
            .map_err(|e: oci_client::ParseError| Error::InvalidImageName {
                image: image.to_owned(),
                reason: e.to_string(),
            })?;
    Ok(parsed.whole())
}

fn credentials(auth: &RegistryAuth, image: &str) -> Option<DockerCredentials> {
    match auth {
        RegistryAuth::Anonymous => None,
        RegistryAuth::Basic { username, password } => {
            let registry = image
                .parse::<oci_client::Reference>()
                .map(|r| r.resolve_registry().to_owned())
                .ok();
            Some(DockerCredentials {
                username: Some(username.clone()),
                password: Some(password.clone()),
                serveraddress: registry,
                ..DockerCredentials::default()
            })
        }
    }
}

/// The image's info, or `None` if Docker does not have it.
pub(crate) async fn status(
    connection: &Connection,
    docker: &Docker,
    image: &str,
) -> Result<Option<ImageInfo>, Error> {
    match docker.inspect_image(image).await {
        Ok(found) => Ok(Some(info_of(found))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(connection.error("inspect image", e)),
    }
}

/// Pull `image`, reporting progress; returns the pulled image.
pub(crate) async fn pull(
    connection: &Connection,
    docker: &Docker,
    image: &str,
    auth: &RegistryAuth,
    progress: &mut (dyn FnMut(&ProgressEvent) + Send),
) -> Result<ImageInfo, Error> {
    let reference = normalize(image)?;
    let pull_error = |message: String, source: Option<DockerError>| Error::ImagePull {
        image: image.to_owned(),
        message,
        source: source.map(Into::into),
    };
    let options = CreateImageOptionsBuilder::default()
        .from_image(&reference)
        .build();
    let mut stream = docker.create_image(Some(options), None, credentials(auth, &reference));
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => progress(&event_of(info.id, info.status, info.progress_detail)),
            Err(e) => {
                let message = pull_message(&e);
                return Err(pull_error(
                    message,
                    Some(connection.source("pull image", e)),
                ));
            }
        }
    }
    match docker.inspect_image(&reference).await {
        Ok(found) => {
            let info = info_of(found);
            tracing::info!(image, id = %info.id, "pulled image");
            Ok(info)
        }
        Err(e) => Err(pull_error(
            "the pull finished but the image is not there".to_owned(),
            Some(connection.source("inspect image", e)),
        )),
    }
}

/// What to tell a user about a failed pull.
fn pull_message(error: &bollard::errors::Error) -> String {
    let message = message_of(error);
    match status_of(error) {
        Some(404) if !message.contains("not found") => format!("not found: {message}"),
        Some(401) | Some(403) => format!("unauthorized: {message}"),
        _ => message,
    }
}

/// Push `image` to its registry, reporting progress.
pub(crate) async fn push(
    connection: &Connection,
    docker: &Docker,
    image: &str,
    auth: &RegistryAuth,
    progress: &mut (dyn FnMut(&ProgressEvent) + Send),
) -> Result<(), Error> {
    let reference = normalize(image)?;
    let (repo, tag) = super::pause::split_tag(&reference);
    let push_error = |message: String, source: DockerError| Error::Internal {
        context: format!("push {image}: {message}"),
        source: source.into(),
    };
    let options = PushImageOptionsBuilder::default().tag(tag).build();
    let mut stream = docker.push_image(repo, Some(options), credentials(auth, &reference));
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => progress(&event_of(None, info.status, info.progress_detail)),
            Err(e) => {
                return Err(push_error(
                    message_of(&e),
                    connection.source("push image", e),
                ));
            }
        }
    }
    tracing::info!(image, "pushed image");
    Ok(())
}

/// All images with their tags.
pub(crate) async fn list(
    connection: &Connection,
    docker: &Docker,
) -> Result<Vec<ImageInfo>, Error> {
    let options = ListImagesOptionsBuilder::default().all(false).build();
    let images = docker
        .list_images(Some(options))
        .await
        .map_err(|e| connection.error("list images", e))?;
    Ok(images
        .into_iter()
        .map(|summary| ImageInfo {
            id: summary.id,
            tags: summary
                .repo_tags
                .into_iter()
                .filter(|t| t != "<none>:<none>")
                .collect(),
            size: u64::try_from(summary.size).unwrap_or(0),
        })
        .collect())
}

/// Remove one reference; unknown ones are fine.
pub(crate) async fn remove(
    connection: &Connection,
    docker: &Docker,
    image: &str,
) -> Result<(), Error> {
    let options = RemoveImageOptionsBuilder::default().build();
    match docker.remove_image(image, Some(options), None).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(connection.error("remove image", e)),
    }
}

/// What kind of archive a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// An image archive from `docker save` (has `manifest.json`): loaded.
    ImageArchive,
    /// Anything else, e.g. a root file system tarball (possibly compressed): imported as the
    /// single layer of a new image.
    Rootfs,
}

/// Tell an image archive from a root file system tarball by its top-level `manifest.json`.
pub fn archive_kind(file: &Path) -> Result<ArchiveKind, DockerError> {
    let io = |operation, source| DockerError::File {
        operation,
        path: file.to_owned(),
        source,
    };
    let handle = std::fs::File::open(file).map_err(|e| io("open", e))?;
    let mut archive = tar::Archive::new(handle);
    let Ok(entries) = archive.entries_with_seek() else {
        return Ok(ArchiveKind::Rootfs);
    };
    for entry in entries {
        // A compressed or otherwise non-tar file: Docker's import sorts out compression.
        let Ok(entry) = entry else {
            return Ok(ArchiveKind::Rootfs);
        };
        let Ok(path) = entry.path() else { continue };
        let path = path.to_string_lossy();
        if matches!(
            path.trim_start_matches("./"),
            "manifest.json" | "repositories"
        ) {
            return Ok(ArchiveKind::ImageArchive);
        }
    }
    Ok(ArchiveKind::Rootfs)
}

/// Import `file` as image `name`: a `docker save` archive is loaded and its (first) image
/// tagged `name`; a root file system tarball becomes a one-layer image.
pub(crate) async fn import(
    connection: &Connection,
    docker: &Docker,
    file: &Path,
    name: &str,
) -> Result<ImageInfo, Error> {
    let reference = normalize(name)?;
    let kind = archive_kind(file).map_err(|e| Error::internal("docker image import", e))?;
    let open = tokio::fs::File::open(file)
        .await
        .map_err(|e| Error::io("open image file", file, e))?;
    let body = tokio_util::io::ReaderStream::new(open);
    match kind {
        ArchiveKind::Rootfs => {
            let (repo, tag) = super::pause::split_tag(&reference);
            let options = CreateImageOptionsBuilder::default()
                .from_src("-")
                .repo(repo)
                .tag(tag)
                .build();
            let mut stream =
                docker.create_image(Some(options), Some(bollard::body_try_stream(body)), None);
            while let Some(item) = stream.next().await {
                item.map_err(|e| connection.error("import root file system", e))?;
            }
        }
        ArchiveKind::ImageArchive => {
            let options = ImportImageOptionsBuilder::default().quiet(true).build();
            let mut stream = docker.import_image_stream(options, body, None);
            let mut loaded = Vec::new();
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| connection.error("load image archive", e))?;
                if let Some(text) = info.stream {
                    loaded.extend(loaded_images(&text));
                }
            }
            let Some(source) = loaded.first() else {
                return Err(Error::InvalidImage {
                    image: name.to_owned(),
                    reason: format!("{} contains no image", file.display()),
                });
            };
            if loaded.len() > 1 {
                tracing::warn!(file = %file.display(), ?loaded, "archive holds several images; tagging the first");
            }
            let (repo, tag) = super::pause::split_tag(&reference);
            let options = TagImageOptionsBuilder::default()
                .repo(repo)
                .tag(tag)
                .build();
            docker
                .tag_image(source, Some(options))
                .await
                .map_err(|e| connection.error("tag loaded image", e))?;
        }
    }
    let info = status(connection, docker, &reference)
        .await?
        .ok_or_else(|| Error::ImageNotFound {
            image: reference.clone(),
        })?;
    tracing::info!(file = %file.display(), image = %reference, id = %info.id, ?kind, "imported image");
    Ok(info)
}

/// The images a `docker load` progress message names (`Loaded image: a:b`, `Loaded image
/// ID: sha256:...`).
pub fn loaded_images(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            line.strip_prefix("Loaded image ID: ")
                .or_else(|| line.strip_prefix("Loaded image: "))
                .map(str::to_owned)
        })
        .collect()
}

fn info_of(image: ImageInspect) -> ImageInfo {
    ImageInfo {
        id: image.id.unwrap_or_default(),
        tags: image.repo_tags.unwrap_or_default(),
        size: image.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_references() {
        assert_eq!(
            normalize("busybox").expect("ok"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize("127.0.0.1:5000/app:v1").expect("ok"),
            "127.0.0.1:5000/app:v1"
        );
        let bad = normalize("Bad/Name").expect_err("invalid");
        assert_eq!(bad.reason(), "InvalidImageName");
    }

    #[test]
    fn parses_load_messages() {
        assert_eq!(
            loaded_images("Loaded image: app:v1\nLoaded image ID: sha256:abc\n"),
            ["app:v1", "sha256:abc"]
        );
        assert!(loaded_images("unrelated").is_empty());
    }

    #[test]
    fn tells_image_archives_from_rootfs_tarballs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write_tar = |name: &str, files: &[&str]| {
            let path = dir.path().join(name);
            let mut builder = tar::Builder::new(std::fs::File::create(&path).expect("create"));
            for file in files {
                let mut header = tar::Header::new_gnu();
                header.set_size(2);
                header.set_mode(0o644);
                builder
                    .append_data(&mut header, file, &b"{}"[..])
                    .expect("append");
            }
            builder.finish().expect("finish");
            path
        };
        let saved = write_tar("saved.tar", &["abc/layer.tar", "manifest.json"]);
        let rootfs = write_tar("rootfs.tar", &["bin/sh", "etc/manifest.json"]);
        assert_eq!(
            archive_kind(&saved).expect("kind"),
            ArchiveKind::ImageArchive
        );
        assert_eq!(archive_kind(&rootfs).expect("kind"), ArchiveKind::Rootfs);
        let gz = dir.path().join("rootfs.tar.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]).expect("write");
        assert_eq!(archive_kind(&gz).expect("kind"), ArchiveKind::Rootfs);
        assert!(archive_kind(&dir.path().join("missing.tar")).is_err());
    }
}
