//! Queries and changes on stored images: resolve what a user typed, list, inspect, tag, remove.

use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::{looks_like_id, Reference};
use crate::store::{ImageRecord, Store};

/// An image with its names, as `isola images` lists it.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// The stored record.
    pub record: ImageRecord,
    /// Its tags, as full references.
    pub tags: Vec<Reference>,
}

/// What [`Store::remove_image`] did, in order, for printing as Docker does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A tag was removed (full reference).
    Untagged(String),
    /// An image record was deleted.
    Deleted(Digest),
}

impl Store {
    /// Finds the image a user means by `s`: a name (`busybox`, `busybox:1`, `docker.io/library/busybox`,
    /// `name@sha256:<manifest or config digest>`), a full image ID (`sha256:<hex>`) or a unique ID prefix.
    /// Names are tried before ID prefixes, as Docker does.
    pub fn resolve(&self, s: &str) -> Result<Digest> {
        // A full digest is an image ID or manifest digest, never a name (an archive could otherwise
        // tag an image `sha256:<someone else's ID>` and shadow it).
        let full = s.strip_prefix("sha256:").unwrap_or(s);
        if let Ok(d) = Digest::from_hex(full) {
            if self.db().image(&d)?.is_some() {
                return Ok(d);
            }
            if let Some(id) = self.db().images_with_manifest(&d)?.into_iter().next() {
                return Ok(id);
            }
            return Err(Error::NoSuchImage(s.to_owned()));
        }
        if let Ok(r) = Reference::parse(s) {
            if let Some(d) = r.digest() {
                let d = Digest::parse(d)?;
                let by_manifest = self.db().images_with_manifest(&d)?;
                if let Some(id) = by_manifest.into_iter().next() {
                    return Ok(id);
                }
                if self.db().image(&d)?.is_some() {
                    return Ok(d);
                }
            } else if let Some(id) = self.db().image_for_tag(&r.to_string())? {
                return Ok(id);
            }
        }
        if let Some(hex) = looks_like_id(s) {
            let found = self.db().images_with_prefix(hex)?;
            match found.len() {
                0 => {}
                1 => return Ok(found.into_iter().next().expect("one element")),
                _ => return Err(Error::AmbiguousImage(s.to_owned())),
            }
        }
        Err(Error::NoSuchImage(s.to_owned()))
    }

    /// The stored record of image `id`.
    pub fn image(&self, id: &Digest) -> Result<ImageRecord> {
        self.db()
            .image(id)?
            .ok_or_else(|| Error::NoSuchImage(id.to_string()))
    }

    /// The tags of image `id`.
    pub fn tags(&self, id: &Digest) -> Result<Vec<Reference>> {
        Ok(self
            .db()
            .tags_of(id)?
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .collect())
    }

    /// Every image with its tags, newest first.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let mut out = Vec::new();
        for id in self.db().image_ids()? {
            if let Some(record) = self.db().image(&id)? {
                let tags = self.tags(&id)?;
                out.push(ImageSummary { record, tags });
            }
        }
        Ok(out)
    }

    /// The image config (image-spec "config.md") as stored, parsed as JSON.
    pub fn config_json(&self, id: &Digest) -> Result<Value> {
        let data = self.read_blob(id, crate::archive::MAX_JSON)?;
        serde_json::from_slice(&data).map_err(|source| Error::Json {
            what: "image config",
            name: id.to_string(),
            source,
        })
    }

    /// Docker-shaped `image inspect` JSON: Id, RepoTags, RepoDigests, Created, Architecture, Os,
    /// Size (bytes), Config, RootFS{Type, Layers}, GraphDriver (the unpacked layer directories).
    pub fn inspect(&self, id: &Digest) -> Result<Value> {
        let rec = self.image(id)?;
        let config = self.config_json(id)?;
        let tags = self.tags(id)?;
        let repo_tags: Vec<String> = tags
            .iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    t.familiar_repository(),
                    t.tag().unwrap_or("latest")
                )
            })
            .collect();
        let mut repo_digests: Vec<String> = tags
            .iter()
            .map(|t| format!("{}@{}", t.familiar_repository(), rec.manifest_digest))
            .collect();
        repo_digests.dedup();
        let layer_dirs: Vec<String> = rec
            .layers
            .iter()
            .rev()
            .map(|l| self.layer_path(&l.chain_id).display().to_string())
            .collect();
        Ok(json!({
            "Id": rec.id.to_string(),
            "RepoTags": repo_tags,
            "RepoDigests": repo_digests,
            "Created": config.get("created").cloned().unwrap_or(Value::Null),
            "Author": config.get("author").cloned().unwrap_or(Value::Null),
            "Architecture": config.get("architecture").cloned().unwrap_or(Value::Null),
            "Variant": config.get("variant").cloned().unwrap_or(Value::Null),
            "Os": config.get("os").cloned().unwrap_or(Value::Null),
            "Size": rec.size,
            "Config": config.get("config").cloned().unwrap_or_else(|| json!({})),
            "RootFS": {
                "Type": "layers",
                "Layers": rec.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
            },
            "GraphDriver": {
                "Name": "overlay",
                "Data": { "LowerDir": layer_dirs.join(":") },
            },
            "Manifest": { "Digest": rec.manifest_digest.to_string(), "MediaType": rec.manifest_media_type },
        }))
    }

    /// Points `target` (a name, tagged `latest` if untagged) at the image `source` resolves to.
    pub fn tag(&self, source: &str, target: &str) -> Result<Reference> {
        let id = self.resolve(source)?;
        let target = Reference::parse(target)?;
        if target.digest().is_some() {
            return Err(Error::Reference(
                crate::reference::ReferenceError::Invalid {
                    input: target.to_string(),
                    reason: "a tag target cannot contain a digest".into(),
                },
            ));
        }
        self.db().set_tag(&target.to_string(), &id)?;
        Ok(target)
    }

    /// Removes what `name` refers to, as `docker rmi` does: a tag is untagged and the image deleted when
    /// no tag is left; an image ID with several tags needs `force`. `users` returns the containers that
    /// use an image; an image in use is refused unless `force`. Unreferenced content is then collected.
    pub fn remove_image(
        &self,
        name: &str,
        force: bool,
        users: &dyn Fn(&Digest) -> Vec<String>,
    ) -> Result<Vec<Removed>> {
        let id = self.resolve(name)?;
        let tags = self.db().tags_of(&id)?;
        let by_tag = Reference::parse(name)
            .ok()
            .filter(|r| r.digest().is_none())
            .map(|r| r.to_string())
            .filter(|t| tags.contains(t));
        let mut done = Vec::new();
        let remaining: Vec<String> = match &by_tag {
            Some(t) => tags.iter().filter(|x| *x != t).cloned().collect(),
            None => Vec::new(),
        };
        if by_tag.is_none() && tags.len() > 1 && !force {
            return Err(Error::Conflict {
                image: name.to_owned(),
                reason: format!(
                    "image {} is referenced in multiple repositories (use -f to remove them all)",
                    id.short()
                ),
            });
        }
        // An image that containers use keeps its content: without -f the removal is refused; with
        // -f only its names go (it stays as an untagged image until its containers are removed).
        let in_use = if remaining.is_empty() {
            users(&id)
        } else {
            Vec::new()
        };
        if !in_use.is_empty() && !force {
            return Err(Error::Conflict {
                image: name.to_owned(),
                reason: format!(
                    "image is in use by container {} (use -f)",
                    in_use.join(", ")
                ),
            });
        }
        let untag: Vec<String> = match by_tag {
            Some(t) => vec![t],
            None => tags,
        };
        for t in untag {
            self.db().remove_tag(&t)?;
            let shown = Reference::parse(&t)
                .map(|r| {
                    format!(
                        "{}:{}",
                        r.familiar_repository(),
                        r.tag().unwrap_or("latest")
                    )
                })
                .unwrap_or(t);
            done.push(Removed::Untagged(shown));
        }
        if remaining.is_empty() && in_use.is_empty() {
            self.db().delete_image(&id)?;
            done.push(Removed::Deleted(id));
            self.gc()?;
        }
        Ok(done)
    }
}
