//! Errors of the image store. Each variant carries the thing it is about (path, digest, entry, reference)
//! and a short lower-case message that does not repeat its `#[source]`.

use std::io;
use std::path::PathBuf;

use crate::digest::{Digest, DigestError};
use crate::layer::LayerError;
use crate::reference::ReferenceError;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation on `path` failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done, e.g. "create directory".
        op: &'static str,
        /// The path operated on.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The state database failed.
    #[error("image database {path}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// Content did not hash to the digest it was named by.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What the content is, e.g. "layer blob" or "config".
        what: &'static str,
        /// The digest it was named by.
        expected: Digest,
        /// The digest of the bytes actually read.
        actual: Digest,
    },
    /// Content was not as long as its descriptor says.
    #[error("size mismatch for {what} {digest}: descriptor says {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What the content is.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// The descriptor's size in bytes.
        expected: u64,
        /// The size actually read, in bytes.
        actual: u64,
    },
    /// A string that should be a digest is not one.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// A user-given or archive-given image reference is invalid.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// An archive is malformed: a required file is missing, JSON does not parse, a field is wrong.
    #[error("invalid archive {archive}: {reason}")]
    Archive {
        /// The archive path as the user gave it.
        archive: PathBuf,
        /// What is wrong, naming the file or field.
        reason: String,
    },
    /// A JSON document in an archive or the store does not parse.
    #[error("invalid {what} {name}")]
    Json {
        /// What the document is, e.g. "manifest".
        what: &'static str,
        /// Its digest or path.
        name: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A blob that a manifest or index references is not in the archive.
    #[error("{what} {digest} is referenced but missing from the archive")]
    MissingBlob {
        /// What the blob is, e.g. "layer".
        what: &'static str,
        /// The missing digest.
        digest: Digest,
    },
    /// A media type isola does not handle.
    #[error("unsupported media type {media_type:?} for {what} {digest}")]
    UnknownMediaType {
        /// What the descriptor describes.
        what: &'static str,
        /// The media type as found.
        media_type: String,
        /// The descriptor's digest.
        digest: String,
    },
    /// A layer's media type says one compression and its bytes say another.
    #[error("layer {digest}: media type {media_type:?} does not match its content ({found})")]
    CompressionMismatch {
        /// The layer digest (or archive path for layers without digest).
        digest: String,
        /// The declared media type.
        media_type: String,
        /// The compression found from the magic bytes.
        found: &'static str,
    },
    /// Unpacking a layer failed.
    #[error("layer {digest}")]
    Layer {
        /// The layer's blob digest (or path in the archive when it has none yet).
        digest: String,
        /// The cause.
        #[source]
        source: LayerError,
    },
    /// An index holds no manifest for the requested platform.
    #[error("no image for platform {platform} in {index} (found: {found})")]
    NoPlatform {
        /// The platform asked for, `os/arch[/variant]`.
        platform: String,
        /// The index digest or file.
        index: String,
        /// The platforms present, comma-separated.
        found: String,
    },
    /// A platform string is malformed.
    #[error("invalid platform {0:?}: expected os/arch[/variant]")]
    BadPlatform(String),
    /// An image config is inconsistent with its manifest.
    #[error("image config {config}: {reason}")]
    BadConfig {
        /// The config digest.
        config: Digest,
        /// What is wrong.
        reason: String,
    },
    /// No image matches what the user typed.
    #[error("no such image: {0}")]
    NoSuchImage(String),
    /// An ID prefix matches several images.
    #[error("image ID prefix {0:?} is ambiguous")]
    AmbiguousImage(String),
    /// The operation would remove something still in use; `-f` overrides.
    #[error("conflict: unable to remove {image}: {reason}")]
    Conflict {
        /// What the user asked to remove.
        image: String,
        /// Why it is refused.
        reason: String,
    },
    /// An import `--change` instruction is invalid.
    #[error(transparent)]
    Change(#[from] crate::changes::ChangeError),
    /// The archive holds no image at all.
    #[error("no image found in {0}")]
    Empty(PathBuf),
}

/// Attaches an operation and a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            op,
            path: path.into(),
            source,
        })
    }
}
