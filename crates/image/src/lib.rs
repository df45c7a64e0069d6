//! The isola OCI image store (OCI image-spec v1.1).
//!
//! Everything this crate reads is hostile input: image archives, manifests, image configs and the tar
//! streams of layers come from whoever built the image. The store guards against:
//! - path traversal: tar entries with `..` or absolute paths, writes through symlinks and hard links that
//!   point outside the layer being unpacked (every path is resolved beneath the layer root, no symlink is
//!   ever followed during unpacking);
//! - content substitution: every blob is verified against its sha256 digest as it is written, and every
//!   layer's uncompressed stream against its diff ID;
//! - resource exhaustion: a layer's uncompressed size is bounded, and JSON documents are size-limited;
//! - torn state: every write goes to a temporary name under the store and is renamed into place, and the
//!   database records an image only after all its content is in place, so an interrupted operation leaves
//!   only garbage that the next operation removes.

#![deny(missing_docs)]

pub mod archive;
pub mod builtin;
pub mod changes;
pub mod compression;
pub mod digest;
pub mod error;
pub mod images;
pub mod import;
pub mod layer;
pub mod load;
pub mod media;
pub mod platform;
pub mod reference;
pub mod save;
pub mod store;
pub mod targuard;

pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::Reference;
pub use store::Store;
