//! Writers of image archives for the integration tests, independent of isola's own code.
//!
//! [`Image`] turns layers (from [`super::layer`], re-exported here) into a real image-spec
//! config and manifest. [`docker_archive`] and [`oci_layout`] lay images out as a docker-archive
//! or an OCI image layout, as a set of [`Files`] that a test may tamper with before writing it as
//! a tar or a directory.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

pub use super::layer::*;

pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A single-platform image: layers plus the runtime configuration of its config blob.
#[derive(Clone, Debug)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    pub created: String,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: String,
    pub user: String,
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl Image {
    /// A linux/amd64 image with `PATH` set and `/bin/sh` as command.
    pub fn new(layers: Vec<Layer>) -> Self {
        Image {
            layers,
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
            created: "2023-11-14T22:13:20Z".into(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: Some(vec!["/bin/sh".into()]),
            entrypoint: None,
            working_dir: String::new(),
            user: String::new(),
            exposed_ports: Vec::new(),
            labels: BTreeMap::new(),
        }
    }

    pub fn arch(mut self, architecture: &str, variant: Option<&str>) -> Self {
        self.architecture = architecture.into();
        self.variant = variant.map(Into::into);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn config_json(&self) -> Vec<u8> {
        let mut config = serde_json::Map::new();
        config.insert("Env".into(), json!(self.env));
        if let Some(cmd) = &self.cmd {
            config.insert("Cmd".into(), json!(cmd));
        }
        if let Some(ep) = &self.entrypoint {
            config.insert("Entrypoint".into(), json!(ep));
        }
        if !self.working_dir.is_empty() {
            config.insert("WorkingDir".into(), json!(self.working_dir));
        }
        if !self.user.is_empty() {
            config.insert("User".into(), json!(self.user));
        }
        if !self.exposed_ports.is_empty() {
            let ports: serde_json::Map<String, Value> = self
                .exposed_ports
                .iter()
                .map(|p| (p.clone(), json!({})))
                .collect();
            config.insert("ExposedPorts".into(), Value::Object(ports));
        }
        if !self.labels.is_empty() {
            config.insert("Labels".into(), json!(self.labels));
        }
        let history: Vec<Value> = (0..self.layers.len())
            .map(|i| json!({"created": self.created, "created_by": format!("layer {i}")}))
            .collect();
        let mut doc = json!({
            "created": self.created,
            "architecture": self.architecture,
            "os": self.os,
            "config": Value::Object(config),
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": history,
        });
        if let Some(v) = &self.variant {
            doc["variant"] = json!(v);
        }
        serde_json::to_vec(&doc).unwrap()
    }

    pub fn config_digest(&self) -> String {
        digest_of(&self.config_json())
    }

    /// The image ID: the config digest, `sha256:<hex>`.
    pub fn id(&self) -> String {
        self.config_digest()
    }

    pub fn manifest_json(&self) -> Vec<u8> {
        let config = self.config_json();
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.blob.len()}))
            .collect();
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": digest_of(&config), "size": config.len()},
            "layers": layers,
        }))
        .unwrap()
    }

    pub fn manifest_digest(&self) -> String {
        digest_of(&self.manifest_json())
    }

    pub fn platform(&self) -> Value {
        let mut p = json!({"architecture": self.architecture, "os": self.os});
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }

    /// The chain IDs of the layers, bottom first (the names of isola's layer directories).
    pub fn chain_ids(&self) -> Vec<String> {
        chain_ids(
            &self
                .layers
                .iter()
                .map(|l| l.diff_id.clone())
                .collect::<Vec<_>>(),
        )
    }
}

/// Chain IDs from diff IDs (image-spec): `C0 = D0`, `Cn = sha256(C(n-1) + " " + Dn)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => digest_of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Archive contents

/// The files of an archive, in order; written as a tar ([`Files::tar`]) or a directory.
#[derive(Clone, Debug, Default)]
pub struct Files {
    entries: Vec<(String, Vec<u8>)>,
}

pub fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", hex_of(digest))
}

impl Files {
    /// Adds a file, or replaces its content in place when the path exists.
    pub fn put(&mut self, path: &str, data: impl Into<Vec<u8>>) {
        let data = data.into();
        match self.entries.iter_mut().find(|(p, _)| p == path) {
            Some(e) => e.1 = data,
            None => self.entries.push((path.to_string(), data)),
        }
    }

    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, d)| d.as_slice())
    }

    pub fn paths(&self) -> Vec<String> {
        self.entries.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Removes a file; panics when it is not there.
    pub fn remove(&mut self, path: &str) {
        let before = self.entries.len();
        self.entries.retain(|(p, _)| p != path);
        assert!(self.entries.len() < before, "no file {path} in archive");
    }

    pub fn remove_blob(&mut self, digest: &str) {
        self.remove(&blob_path(digest));
    }

    /// Changes the content of a blob without changing its name or size: its last byte is
    /// flipped. For an uncompressed layer that byte is end-of-archive padding, so the tar still
    /// reads; only the digest is wrong.
    pub fn corrupt_blob(&mut self, digest: &str) {
        let path = blob_path(digest);
        let e = self
            .entries
            .iter_mut()
            .find(|(p, _)| *p == path)
            .expect("no such blob");
        let last = e.1.last_mut().expect("empty blob");
        *last ^= 0x01;
    }

    /// Moves a file to the front (readers must not depend on the order of an archive).
    pub fn move_to_front(&mut self, path: &str) {
        let i = self
            .entries
            .iter()
            .position(|(p, _)| p == path)
            .expect("no such file");
        let e = self.entries.remove(i);
        self.entries.insert(0, e);
    }

    /// The archive as a tar, with directory entries before their first file.
    pub fn tar(&self) -> Vec<u8> {
        let mut b = LayerBuilder::new();
        let mut dirs: Vec<String> = Vec::new();
        for (path, data) in &self.entries {
            let mut prefix = String::new();
            for comp in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
                prefix.push_str(comp);
                prefix.push('/');
                if !dirs.contains(&prefix) {
                    dirs.push(prefix.clone());
                    b = b.dir(&prefix);
                }
            }
            b = b.file(path, data);
        }
        b.tar()
    }

    /// Writes the archive into `dir` (an OCI layout directory).
    pub fn write_dir(&self, dir: &Path) {
        for (path, data) in &self.entries {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
        }
    }

    pub fn write_tar(&self, path: &Path) {
        std::fs::write(path, self.tar()).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// docker-archive

/// Shapes of `docker save` output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DockerStyle {
    /// `manifest.json` naming `blobs/sha256/<hex>` files.
    Modern,
    /// Like `Modern`, plus the `index.json` and `oci-layout` of an OCI layout.
    ModernWithIndex,
    /// `<id>/layer.tar`, `<id>/json`, `<id>/VERSION`, `<config hex>.json`, `repositories`.
    Legacy,
}

/// A docker-archive holding `images`, each with its RepoTags (e.g. `busybox:latest`).
pub fn docker_archive(images: &[(&Image, &[&str])], style: DockerStyle) -> Files {
    let mut files = Files::default();
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (image, tags) in images {
        let config = image.config_json();
        let mut layer_paths = Vec::new();
        let mut parent: Option<String> = None;
        for (i, layer) in image.layers.iter().enumerate() {
            match style {
                DockerStyle::Modern | DockerStyle::ModernWithIndex => {
                    let path = blob_path(&layer.digest);
                    files.put(&path, layer.blob.clone());
                    layer_paths.push(path);
                }
                DockerStyle::Legacy => {
                    // v1 layer IDs: derived from the parent ID and the layer's content.
                    let id = sha256_hex(
                        format!("{} {}", parent.as_deref().unwrap_or(""), layer.diff_id).as_bytes(),
                    );
                    let mut v1 = json!({"id": id, "created": image.created});
                    if let Some(p) = &parent {
                        v1["parent"] = json!(p);
                    }
                    if i + 1 == image.layers.len() {
                        v1["config"] =
                            serde_json::from_slice::<Value>(&config).unwrap()["config"].clone();
                        v1["architecture"] = json!(image.architecture);
                        v1["os"] = json!(image.os);
                    }
                    files.put(&format!("{id}/VERSION"), b"1.0".to_vec());
                    files.put(&format!("{id}/json"), serde_json::to_vec(&v1).unwrap());
                    files.put(&format!("{id}/layer.tar"), layer.blob.clone());
                    layer_paths.push(format!("{id}/layer.tar"));
                    parent = Some(id);
                }
            }
        }
        let config_path = match style {
            DockerStyle::Legacy => format!("{}.json", hex_of(&image.config_digest())),
            _ => blob_path(&image.config_digest()),
        };
        files.put(&config_path, config);
        manifest.push(json!({"Config": config_path, "RepoTags": tags, "Layers": layer_paths}));
        if style == DockerStyle::ModernWithIndex {
            files.put(&blob_path(&image.manifest_digest()), image.manifest_json());
        }
        for tag in *tags {
            let (repo, t) = split_tag(tag);
            let top = match style {
                DockerStyle::Legacy => parent.clone().unwrap_or_default(),
                _ => hex_of(&image.config_digest()).to_string(),
            };
            repositories
                .entry(repo.to_string())
                .or_default()
                .insert(t.to_string(), top);
        }
    }
    if style == DockerStyle::ModernWithIndex {
        let manifests: Vec<Value> = images
            .iter()
            .flat_map(|(image, tags)| {
                let m = image.manifest_json();
                let mut descs = Vec::new();
                for tag in tags.iter().map(Some).chain(tags.is_empty().then_some(None)) {
                    let mut d = json!({
                        "mediaType": MT_OCI_MANIFEST, "digest": digest_of(&m), "size": m.len(),
                    });
                    if let Some(tag) = tag {
                        d["annotations"] = json!({
                            "io.containerd.image.name": qualify(tag),
                            REF_NAME: split_tag(tag).1,
                        });
                    }
                    descs.push(d);
                }
                descs
            })
            .collect();
        files.put(
            "index.json",
            serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests,
            }))
            .unwrap(),
        );
        files.put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
    }
    files.put("manifest.json", serde_json::to_vec(&manifest).unwrap());
    if !repositories.is_empty() {
        files.put("repositories", serde_json::to_vec(&repositories).unwrap());
    }
    files
}

/// `repo:tag` → (`repo`, `tag`); the tag defaults to `latest`.
fn split_tag(name: &str) -> (&str, &str) {
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (name, "latest"),
    }
}

/// A short name made fully qualified the way Docker does (`busybox` → `docker.io/library/busybox`).
pub fn qualify(name: &str) -> String {
    let (repo, tag) = split_tag(name);
    let first = repo.split('/').next().unwrap();
    let has_domain =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let repo = if has_domain {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    format!("{repo}:{tag}")
}

// ---------------------------------------------------------------------------------------------
// OCI image layout

/// What an index descriptor points at.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Node {
    Image(Image),
    Index(Vec<Node>),
}

impl Node {
    /// A multi-platform index over `images`.
    pub fn multi(images: Vec<Image>) -> Node {
        Node::Index(images.into_iter().map(Node::Image).collect())
    }

    /// `depth` indexes wrapped around one image manifest.
    pub fn nested(image: Image, depth: usize) -> Node {
        (0..depth).fold(Node::Image(image), |n, _| Node::Index(vec![n]))
    }

    /// Writes the node's blobs into `files`; returns its descriptor.
    fn write(&self, files: &mut Files) -> Value {
        match self {
            Node::Image(image) => {
                for l in &image.layers {
                    files.put(&blob_path(&l.digest), l.blob.clone());
                }
                files.put(&blob_path(&image.config_digest()), image.config_json());
                let m = image.manifest_json();
                let d = digest_of(&m);
                let size = m.len();
                files.put(&blob_path(&d), m);
                json!({
                    "mediaType": MT_OCI_MANIFEST, "digest": d, "size": size,
                    "platform": image.platform(),
                })
            }
            Node::Index(children) => {
                let manifests: Vec<Value> = children.iter().map(|c| c.write(files)).collect();
                let idx = serde_json::to_vec(
                    &json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests}),
                )
                .unwrap();
                let d = digest_of(&idx);
                let size = idx.len();
                files.put(&blob_path(&d), idx);
                json!({"mediaType": MT_OCI_INDEX, "digest": d, "size": size})
            }
        }
    }
}

/// An OCI image layout: `oci-layout`, `index.json` with one descriptor per entry (annotated
/// with `org.opencontainers.image.ref.name` when a name is given), and the blobs.
pub fn oci_layout(entries: &[(Node, Option<&str>)]) -> Files {
    let mut files = Files::default();
    files.put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
    let mut manifests = Vec::new();
    for (node, name) in entries {
        let mut d = node.write(&mut files);
        if let Some(name) = name {
            d["annotations"] = json!({REF_NAME: name});
        }
        manifests.push(d);
    }
    let index = json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests});
    files.put("index.json", serde_json::to_vec(&index).unwrap());
    // index.json and oci-layout first, as `skopeo copy` and `umoci` write them.
    files.move_to_front("index.json");
    files.move_to_front("oci-layout");
    files
}
