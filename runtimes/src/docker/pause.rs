//! The pod sandbox image: Skiff's own static pause program, imported into Docker on first use.
//!
//! `build.rs` compiles `pause/pause.c` statically; the binary is embedded here. The image is
//! a one-file root file system (`/pause`, entrypoint `["/pause"]`) created with Docker's
//! import API — no registry involved. Its config carries the binary's sha256 in the
//! environment variable [`DIGEST_ENV`], so a node upgraded to a different pause program
//! re-imports the image instead of running a stale one.

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

use super::client::{Connection, is_not_found};
use crate::Error;

/// The image name pause containers run (`skiff/pause:3.10`).
pub const PAUSE_IMAGE: &str = "skiff/pause:3.10";

/// Environment variable in the pause image recording the pause binary's sha256.
pub const DIGEST_ENV: &str = "SKIFF_PAUSE_SHA256";

/// The static pause executable.
pub static PAUSE_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/skiff-pause"));

/// Hex sha256 of [`PAUSE_BINARY`].
pub fn binary_digest() -> String {
    format!("{:x}", Sha256::digest(PAUSE_BINARY))
}

/// A tar archive holding only `/pause` (mode 0755, owned by root, fixed mtime).
pub fn rootfs_tar() -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(PAUSE_BINARY.len() as u64);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, "pause", PAUSE_BINARY)?;
    builder.into_inner()
}

/// Make sure `image` exists in Docker and holds this build's pause program; import it if not.
pub(crate) async fn ensure_image(
    connection: &Connection,
    docker: &Docker,
    image: &str,
) -> Result<(), Error> {
    // Runtimes in one process (tests, several instances) would otherwise import side by side
    // and leave the losers' copies dangling.
    static IMPORTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _importing = IMPORTING.lock().await;
    let digest = binary_digest();
    let marker = format!("{DIGEST_ENV}={digest}");
    match docker.inspect_image(image).await {
        Ok(found) => {
            let env = found.config.and_then(|c| c.env).unwrap_or_default();
            if env.iter().any(|e| e == &marker) {
                return Ok(());
            }
            tracing::info!(image, "pause image is from another build; re-importing");
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(connection.error("inspect pause image", e)),
    }
    let (repo, tag) = split_tag(image);
    let tar = rootfs_tar().map_err(|source| Error::Internal {
        context: "pack the pause image".to_owned(),
        source: source.into(),
    })?;
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .changes(vec![
            r#"ENTRYPOINT ["/pause"]"#.to_owned(),
            format!("ENV {marker}"),
        ])
        .build();
    docker
        .create_image(Some(options), Some(bollard::body_full(tar.into())), None)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| connection.error("import pause image", e))?;
    tracing::info!(image, digest, "imported the pause image");
    Ok(())
}

/// `repo:tag` → (`repo`, `tag`); the tag is `latest` when absent. A `:` before the last `/`
/// belongs to a registry port.
pub(crate) fn split_tag(image: &str) -> (&str, &str) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(colon) => (&image[..slash + colon], &image[slash + colon + 1..]),
        None => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_binary_is_a_static_elf() {
        assert_eq!(&PAUSE_BINARY[..4], b"\x7fELF");
        assert_eq!(binary_digest().len(), 64);
    }

    #[test]
    fn rootfs_holds_one_executable() {
        let tar = rootfs_tar().expect("tar");
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let path = e.path().expect("path").display().to_string();
                (path, e.header().mode().expect("mode"), e.size())
            })
            .collect();
        assert_eq!(
            entries,
            [("pause".to_owned(), 0o755, PAUSE_BINARY.len() as u64)]
        );
    }

    #[test]
    fn splits_tags_not_ports() {
        assert_eq!(split_tag("skiff/pause:3.10"), ("skiff/pause", "3.10"));
        assert_eq!(split_tag("busybox"), ("busybox", "latest"));
        assert_eq!(
            split_tag("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", "latest")
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/app:v2"),
            ("127.0.0.1:5000/app", "v2")
        );
    }

    #[test]
    fn the_pause_program_exits_on_sigterm() {
        // Run the real binary (it is static) and check the contract the sandbox relies on.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pause");
        std::fs::write(&path, PAUSE_BINARY).expect("write");
        let mut perms = std::fs::metadata(&path).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).expect("chmod");
        let version = std::process::Command::new(&path)
            .arg("-v")
            .output()
            .expect("run -v");
        assert!(String::from_utf8_lossy(&version.stdout).contains("3.10"));

        let mut child = std::process::Command::new(&path).spawn().expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            child.try_wait().expect("poll").is_none(),
            "pause keeps running"
        );
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "exits 0 on SIGTERM");
    }
}
