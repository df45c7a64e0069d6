//! The isola engine: what a Docker or Podman user drives. Containers are records in a database under
//! `--root`; each running container is owned by a monitor process (the isola binary re-executed) that
//! holds its stdio, writes its log, reaps it and records its exit. The engine reaches an isolation
//! mode (process or VM) only through one trait.

pub mod client;
pub mod config;
pub mod db;
pub mod engine;
pub mod error;
pub mod exec;
pub mod inspect;
pub mod isolation;
pub mod logs;
pub mod monitor;
pub mod names;
pub mod paths;
pub mod rootfs;
pub mod settings;
pub mod spec;
pub mod state;
pub mod vm;

pub use engine::{CreateRequest, Engine};
pub use error::{Error, Result};
pub use paths::Roots;
