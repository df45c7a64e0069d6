//! The isola engine: what a Docker or Podman user drives. Containers are records in a database under
//! `--root`; each running container is owned by a monitor process (the isola binary re-executed) that
//! holds its stdio, writes its log, reaps it and records its exit. The engine reaches an isolation
//! mode (process or VM) only through one trait.

pub mod config;
