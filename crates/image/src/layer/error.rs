//! Errors of layer unpacking.

use std::fmt;
use std::io;

/// The name of a tar entry as it appears in the archive (raw bytes, possibly not UTF-8).
///
/// Displayed lossily as UTF-8 with control characters and quotes escaped, so it can be quoted in a
/// one-line message.
#[derive(Clone, PartialEq, Eq)]
pub struct EntryName(pub Vec<u8>);

impl EntryName {
    /// The raw bytes of the name.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.0).escape_debug())
    }
}

impl fmt::Debug for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl From<&[u8]> for EntryName {
    fn from(bytes: &[u8]) -> Self {
        EntryName(bytes.to_vec())
    }
}

/// Why a hard link entry was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkProblem {
    /// The target is not an entry earlier in this layer (or it was whited out).
    NotFound,
    /// The target path is absolute or has a `..` component.
    Escapes,
    /// A directory on the way to the target is a symlink.
    ThroughSymlink,
    /// The target is a directory, which cannot be hard-linked.
    IsDirectory,
    /// The target name is empty or not a valid path.
    Invalid,
}

impl fmt::Display for LinkProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkProblem::NotFound => "not found in this layer",
            LinkProblem::Escapes => "escapes the layer root",
            LinkProblem::ThroughSymlink => "goes through a symlink",
            LinkProblem::IsDirectory => "is a directory",
            LinkProblem::Invalid => "is not a valid path",
        })
    }
}

/// An error while unpacking a layer (OCI image-spec v1.1, `layer.md`).
///
/// Every message is one lower-case line; entry-specific variants name the tar entry. The caller is
/// expected to delete the partly unpacked destination directory.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The uncompressed tar stream is longer than [`super::ApplyOptions::max_size`] bytes.
    #[error("layer exceeds the size limit of {limit} bytes")]
    SizeLimit {
        /// The limit, in bytes of uncompressed tar stream.
        limit: u64,
    },
    /// The layer has more than [`super::ApplyOptions::max_entries`] tar entries.
    #[error("layer has more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// A GNU long-name or long-link header, or a PAX extended header, has more than
    /// [`crate::targuard::MAX_EXTENSION_SIZE`] bytes of data (or a GNU sparse header more than
    /// that of sparse extension blocks); the tar reader would hold it all in memory.
    #[error("layer entry \"{entry}\": tar header {what}; at most {limit} are allowed")]
    HeaderTooLarge {
        /// The name in the offending header (for GNU long names usually `././@LongLink`).
        entry: EntryName,
        /// What is too large, e.g. `of type 'L' is 1048576 bytes`.
        what: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The tar stream cannot be read or parsed (bad header, checksum, early end of data).
    #[error("truncated or corrupt tar stream")]
    Corrupt(#[source] io::Error),
    /// The destination directory cannot be opened.
    #[error("cannot open the layer directory {path}")]
    OpenDest {
        /// The destination passed to [`super::apply_layer`].
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The entry name is empty.
    #[error("layer entry \"{entry}\": empty path")]
    EmptyPath {
        /// The entry name.
        entry: EntryName,
    },
    /// The entry name is absolute or has a `..` component.
    #[error("layer entry \"{entry}\": path escapes the layer root")]
    Escapes {
        /// The entry name.
        entry: EntryName,
    },
    /// The entry name contains a NUL byte or is longer than `PATH_MAX`.
    #[error("layer entry \"{entry}\": invalid path")]
    InvalidPath {
        /// The entry name.
        entry: EntryName,
    },
    /// A directory on the entry's path is a symlink (in this layer); it is never followed.
    #[error("layer entry \"{entry}\": parent path goes through a symlink")]
    ThroughSymlink {
        /// The entry name.
        entry: EntryName,
    },
    /// A component of the entry's parent path exists and is not a directory.
    #[error("layer entry \"{entry}\": parent path is not a directory")]
    ParentNotDir {
        /// The entry name.
        entry: EntryName,
    },
    /// The entry `.` (or `./`) is not a directory.
    #[error("layer entry \"{entry}\": the layer root can only be a directory")]
    RootNotDir {
        /// The entry name.
        entry: EntryName,
    },
    /// A whiteout names nothing (`.wh.`, `.wh..`, `.wh...`), or a `.wh.` name is used as a directory.
    #[error("layer entry \"{entry}\": invalid whiteout")]
    InvalidWhiteout {
        /// The entry name.
        entry: EntryName,
    },
    /// A hard link whose target is not acceptable.
    #[error("layer entry \"{entry}\": hard link target \"{target}\" {problem}")]
    HardLink {
        /// The entry name.
        entry: EntryName,
        /// The link target as written in the archive.
        target: EntryName,
        /// What is wrong with the target.
        problem: LinkProblem,
    },
    /// A symlink or hard link entry without a target.
    #[error("layer entry \"{entry}\": missing link target")]
    MissingLinkTarget {
        /// The entry name.
        entry: EntryName,
    },
    /// An entry type this unpacker does not handle.
    #[error("layer entry \"{entry}\": unsupported entry type {kind}")]
    Unsupported {
        /// The entry name.
        entry: EntryName,
        /// The type, e.g. `'V'` or `pax sparse file`.
        kind: String,
    },
    /// A header field cannot be decoded or is out of range.
    #[error("layer entry \"{entry}\": invalid {field} in header")]
    BadHeader {
        /// The entry name.
        entry: EntryName,
        /// The field: `mode`, `uid`, `gid`, `mtime`, `device number`.
        field: &'static str,
    },
    /// Setting an extended attribute failed.
    #[error("layer entry \"{entry}\": cannot set xattr {name}")]
    Xattr {
        /// The entry name.
        entry: EntryName,
        /// The attribute name.
        name: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A filesystem operation on the entry failed.
    #[error("layer entry \"{entry}\": cannot {op}")]
    Io {
        /// The entry name.
        entry: EntryName,
        /// The operation, e.g. `create file`, `set owner`.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}
