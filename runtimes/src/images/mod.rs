//! The local, content-addressed store of wasm images, registry pulls and pushes, pull
//! policies, and the progress messages pulls and pushes report.
//!
//! Layout under the data dir (shared by `skiff up`, `skiff node` and `skiff image import`):
//!
//! ```text
//! <data dir>/images/blobs/sha256/<hex>   the wasm bytes, named by their sha256
//! <data dir>/images/tags.json            normalized reference → digest and size
//! <data dir>/images/.lock                flock'd around every update of tags.json
//! ```
//!
//! References are normalized the way Docker does (`hello` → `docker.io/library/hello:latest`),
//! so `skiff image import app.wasm hello` and a pod naming `hello:latest` meet. The store is
//! safe to use from several processes at once: blobs are written to a temporary file and
//! renamed, and `tags.json` is rewritten under an exclusive `flock`.

pub mod policy;
pub mod progress;
pub mod pull;
pub mod push;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::status::ImageInfo;

pub use policy::{PullPolicy, ensure_image};
pub use progress::{ProgressEvent, TransferProgress};
pub use pull::{ArtifactKind, PulledWasm, Puller};
pub use push::PushedWasm;

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The reference cannot be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference given.
        reference: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A file operation failed.
    #[error("image store: {operation} {}: {source}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `tags.json` is not valid JSON.
    #[error("image store: corrupt tag index {}: {source}", path.display())]
    CorruptIndex {
        /// Its path.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A blob's content no longer matches its digest.
    #[error("image store: blob {digest} is corrupt (content hashes to {actual})")]
    CorruptBlob {
        /// The expected digest.
        digest: String,
        /// What the content hashes to.
        actual: String,
    },
}

impl From<StoreError> for crate::Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::InvalidReference { reference, reason } => crate::Error::InvalidImageName {
                image: reference,
                reason,
            },
            other => crate::Error::internal("image store", other),
        }
    }
}

/// One reference in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalized reference (`docker.io/library/hello:latest`).
    pub name: String,
    /// `sha256:<hex>` of the wasm bytes.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TagEntry {
    digest: String,
    size: u64,
}

/// The content-addressed store. Cheap to clone; every call goes to disk, so several
/// processes sharing a data dir see each other's changes. Lookups reuse the parsed tag index
/// while `tags.json` is unchanged (same inode, size and modification time): every pod start
/// resolves its image, and reading and parsing the index each time was 2 % of the node's CPU
/// in a burst of pod starts.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    tags: Arc<Mutex<Option<CachedTags>>>,
}

/// The parsed tag index: normalized reference → entry.
type Tags = BTreeMap<String, TagEntry>;

/// The tag index as last read, and which version of the file it came from.
type CachedTags = (TagsStamp, Arc<Tags>);

/// What identifies one version of `tags.json` (it is replaced, never rewritten in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TagsStamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl ImageStore {
    /// Open (creating if needed) the store under `data_dir/images`.
    pub fn open(data_dir: &Path) -> Result<ImageStore, StoreError> {
        let root = data_dir.join("images");
        let blobs = root.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(|source| StoreError::Io {
            operation: "create",
            path: blobs,
            source,
        })?;
        Ok(ImageStore {
            root,
            tags: Arc::default(),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Normalize a reference the way Docker and the kubelet do.
    pub fn normalize(reference: &str) -> Result<String, StoreError> {
        parse_reference(reference).map(|r| r.whole())
    }

    /// Copy the wasm file at `file` into the store under `name`.
    pub fn import(&self, file: &Path, name: &str) -> Result<ImageRecord, StoreError> {
        let bytes = std::fs::read(file).map_err(|source| StoreError::Io {
            operation: "read",
            path: file.to_owned(),
            source,
        })?;
        self.import_bytes(&bytes, name)
    }

    /// Store `bytes` and point `name` at them.
    pub fn import_bytes(&self, bytes: &[u8], name: &str) -> Result<ImageRecord, StoreError> {
        let name = Self::normalize(name)?;
        let digest = sha256_digest(bytes);
        let path = self.blob_path(&digest);
        if !path.exists() {
            write_atomically(&path, bytes)?;
        }
        let record = ImageRecord {
            name: name.clone(),
            digest: digest.clone(),
            size: bytes.len() as u64,
        };
        self.update_tags(|tags| {
            tags.insert(
                name,
                TagEntry {
                    digest,
                    size: record.size,
                },
            );
        })?;
        Ok(record)
    }

    /// Point `target` at the image `source` points at (`skiff image tag`); `None` if
    /// `source` is not in the store.
    pub fn tag(&self, source: &str, target: &str) -> Result<Option<ImageRecord>, StoreError> {
        let Some(found) = self.resolve(source)? else {
            return Ok(None);
        };
        let name = Self::normalize(target)?;
        let record = ImageRecord {
            name: name.clone(),
            digest: found.digest,
            size: found.size,
        };
        self.update_tags(|tags| {
            tags.insert(
                name,
                TagEntry {
                    digest: record.digest.clone(),
                    size: record.size,
                },
            );
        })?;
        Ok(Some(record))
    }

    /// The record `reference` points at, if any.
    pub fn resolve(&self, reference: &str) -> Result<Option<ImageRecord>, StoreError> {
        let name = Self::normalize(reference)?;
        let tags = self.cached_tags()?;
        Ok(tags.get(&name).and_then(|entry| {
            // A tag whose blob vanished (manual deletion) is not present.
            self.blob_path(&entry.digest).exists().then(|| ImageRecord {
                name: name.clone(),
                digest: entry.digest.clone(),
                size: entry.size,
            })
        }))
    }

    /// Every reference, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, StoreError> {
        Ok(self
            .read_tags()?
            .into_iter()
            .map(|(name, entry)| ImageRecord {
                name,
                digest: entry.digest,
                size: entry.size,
            })
            .collect())
    }

    /// Images grouped by digest, as the runtime reports them.
    pub fn images(&self) -> Result<Vec<ImageInfo>, StoreError> {
        let mut by_digest: BTreeMap<String, ImageInfo> = BTreeMap::new();
        for record in self.list()? {
            let info = by_digest
                .entry(record.digest.clone())
                .or_insert_with(|| ImageInfo {
                    id: record.digest.clone(),
                    tags: Vec::new(),
                    size: record.size,
                });
            info.tags.push(record.name);
        }
        Ok(by_digest.into_values().collect())
    }

    /// Remove `reference`; the blob goes too once no reference uses it. Unknown references
    /// are fine.
    pub fn remove(&self, reference: &str) -> Result<(), StoreError> {
        let name = Self::normalize(reference)?;
        let mut orphan = None;
        self.update_tags(|tags| {
            if let Some(entry) = tags.remove(&name)
                && !tags.values().any(|e| e.digest == entry.digest)
            {
                orphan = Some(entry.digest);
            }
        })?;
        if let Some(digest) = orphan {
            let path = self.blob_path(&digest);
            if let Err(source) = std::fs::remove_file(&path)
                && source.kind() != std::io::ErrorKind::NotFound
            {
                return Err(StoreError::Io {
                    operation: "remove",
                    path,
                    source,
                });
            }
        }
        Ok(())
    }

    /// Where the blob with `digest` lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs").join("sha256").join(hex)
    }

    /// Read a blob and check it still hashes to its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let bytes = std::fs::read(&path).map_err(|source| StoreError::Io {
            operation: "read",
            path,
            source,
        })?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(StoreError::CorruptBlob {
                digest: digest.to_owned(),
                actual,
            });
        }
        Ok(bytes)
    }

    fn tags_path(&self) -> PathBuf {
        self.root.join("tags.json")
    }

    /// The tag index, parsed again only when the file has changed.
    fn cached_tags(&self) -> Result<Arc<Tags>, StoreError> {
        use std::os::unix::fs::MetadataExt;
        let path = self.tags_path();
        let stamp = match std::fs::metadata(&path) {
            Ok(meta) => TagsStamp {
                inode: meta.ino(),
                len: meta.len(),
                modified: meta.modified().ok(),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Arc::default());
            }
            Err(source) => {
                return Err(StoreError::Io {
                    operation: "stat",
                    path,
                    source,
                });
            }
        };
        if let Some((cached, tags)) = &*self.tags.lock()
            && *cached == stamp
        {
            return Ok(Arc::clone(tags));
        }
        let tags = Arc::new(self.read_tags()?);
        *self.tags.lock() = Some((stamp, Arc::clone(&tags)));
        Ok(tags)
    }

    fn read_tags(&self) -> Result<BTreeMap<String, TagEntry>, StoreError> {
        let path = self.tags_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::CorruptIndex { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(source) => Err(StoreError::Io {
                operation: "read",
                path,
                source,
            }),
        }
    }

    fn update_tags(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, TagEntry>),
    ) -> Result<(), StoreError> {
        let lock_path = self.root.join(".lock");
        let io = |operation, path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io {
                operation,
                path,
                source,
            }
        };
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io("lock", &lock_path)(std::io::Error::from(errno)))?;
        let mut tags = self.read_tags()?;
        change(&mut tags);
        let json = serde_json::to_vec_pretty(&tags).map_err(|source| StoreError::CorruptIndex {
            path: self.tags_path(),
            source,
        })?;
        write_atomically(&self.tags_path(), &json)
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

pub(crate) fn parse_reference(reference: &str) -> Result<oci_client::Reference, StoreError> {
    reference
        .trim()
        .parse::<oci_client::Reference>()
        .map_err(|e| StoreError::InvalidReference {
            reference: reference.to_owned(),
            reason: e.to_string(),
        })
}

/// Write to a temporary sibling and rename, so readers never see a partial file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |operation, path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::Io {
            operation,
            path,
            source,
        }
    };
    let temp = path.with_extension(format!("tmp-{}", crate::lifecycle::new_id()));
    let mut file = File::create(&temp).map_err(io("create", &temp))?;
    file.write_all(bytes).map_err(io("write", &temp))?;
    file.sync_all().map_err(io("sync", &temp))?;
    std::fs::rename(&temp, path).map_err(io("rename", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        let n = |r| ImageStore::normalize(r).expect("valid");
        assert_eq!(n("hello"), "docker.io/library/hello:latest");
        assert_eq!(n("hello:v1"), "docker.io/library/hello:v1");
        assert_eq!(n("127.0.0.1:5000/app:v2"), "127.0.0.1:5000/app:v2");
        assert!(ImageStore::normalize("library/UPPER:tag").is_err());
        assert!(ImageStore::normalize("has space").is_err());
    }

    #[test]
    fn import_resolve_list_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let a = store
            .import_bytes(b"\0asm one", "one:latest")
            .expect("import");
        store.import_bytes(b"\0asm one", "alias:v1").expect("alias");
        assert_eq!(a.digest, sha256_digest(b"\0asm one"));
        let found = store.resolve("one").expect("resolve").expect("present");
        assert_eq!(found, a);
        assert_eq!(store.read_blob(&a.digest).expect("blob"), b"\0asm one");
        let images = store.images().expect("images");
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].tags.len(), 2);

        // Reopening (another process) sees the same state.
        let again = ImageStore::open(dir.path()).expect("reopen");
        assert!(again.resolve("alias:v1").expect("resolve").is_some());

        let tagged = store
            .tag("one", "127.0.0.1:5000/one:v2")
            .expect("tag")
            .expect("source present");
        assert_eq!(
            (tagged.name.as_str(), tagged.digest.as_str()),
            ("127.0.0.1:5000/one:v2", a.digest.as_str())
        );
        assert!(store.tag("absent", "x:y").expect("tag").is_none());
        store.remove("127.0.0.1:5000/one:v2").expect("untag");
        assert!(again.resolve("one").expect("resolve").is_some());
        store.remove("one:latest").expect("remove");
        assert!(store.resolve("one").expect("resolve").is_none());
        assert!(
            again.resolve("one").expect("resolve").is_none(),
            "another instance's cached index sees the change"
        );
        assert!(
            store.blob_path(&a.digest).exists(),
            "alias still uses the blob"
        );
        store.remove("alias:v1").expect("remove alias");
        assert!(!store.blob_path(&a.digest).exists(), "orphan blob removed");
        store.remove("never:there").expect("unknown is fine");
    }

    #[test]
    fn detects_corrupt_blobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let record = store.import_bytes(b"content", "x:y").expect("import");
        std::fs::write(store.blob_path(&record.digest), b"tampered").expect("tamper");
        assert!(matches!(
            store.read_blob(&record.digest),
            Err(StoreError::CorruptBlob { .. })
        ));
    }
}
