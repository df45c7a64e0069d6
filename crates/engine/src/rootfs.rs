//! The container's root filesystem: an overlayfs mount of the image's unpacked layers (read-only
//! lower directories, top layer first) and the container's own upper directory, which survives stop
//! and start and is removed with the container.

use isola_image::Store;
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

use crate::error::{Error, Result};
use crate::paths::{is_mounted, Roots};

/// Mounts the container's root filesystem at `<root>/containers/<id>/rootfs` (if not mounted).
pub fn mount_rootfs(roots: &Roots, store: &Store, id: &str, image_id: &str) -> Result<()> {
    let dir = roots.dir(id);
    let target = roots.rootfs(id);
    if is_mounted(&target) {
        return Ok(());
    }
    for sub in ["upper", "work", "rootfs"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| Error::io("create directory", &p, e))?;
    }
    let image_id = isola_image::Digest::parse(image_id).map_err(isola_image::Error::from)?;
    let image = store.image(&image_id)?;
    let mut lowers: Vec<String> = image
        .layers
        .iter()
        .rev()
        .map(|l| store.layer_path(&l.chain_id).display().to_string())
        .collect();
    if lowers.is_empty() {
        // An image without layers: overlayfs needs a lower directory; an empty one will do.
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).map_err(|e| Error::io("create directory", &empty, e))?;
        lowers.push(empty.display().to_string());
    }
    for l in &lowers {
        if l.contains([',', ':']) {
            return Err(Error::io(
                "mount overlay with",
                l.as_str(),
                std::io::Error::other("a path with ',' or ':'"),
            ));
        }
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    let data = std::ffi::CString::new(data).map_err(|_| {
        Error::io(
            "mount overlay on",
            &target,
            std::io::Error::other("NUL in a path"),
        )
    })?;
    mount(
        "overlay",
        &target,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| Error::io("mount overlay on", &target, e.into()))
}

/// Unmounts the container's root filesystem, if mounted.
pub fn unmount_rootfs(roots: &Roots, id: &str) -> Result<()> {
    let target = roots.rootfs(id);
    if !is_mounted(&target) {
        return Ok(());
    }
    unmount(&target, UnmountFlags::DETACH).map_err(|e| Error::io("unmount", &target, e.into()))
}

/// Removes everything the container has on disk (after unmounting).
pub fn remove_files(roots: &Roots, id: &str) -> Result<()> {
    unmount_rootfs(roots, id)?;
    for dir in [roots.dir(id), roots.run_dir(id)] {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &dir, e)),
        }
    }
    Ok(())
}
