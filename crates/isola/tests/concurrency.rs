//! Several isola processes on one store at once.

mod common;

use std::process::Child;

use common::archive::*;
use common::fixtures::*;
use common::{describe, Isola};

/// An image big enough for loads to overlap: many files over several layers.
fn busy_image() -> Image {
    let layers = (0..3)
        .map(|l| {
            let mut b = LayerBuilder::new().dir(format!("l{l}"));
            for i in 0..400 {
                b = b.file(format!("l{l}/f{i}"), noise(4096, l * 1000 + i));
            }
            b.build(Compression::Gzip)
        })
        .collect();
    Image::new(layers)
}

fn wait_all(children: Vec<Child>) {
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "concurrent isola failed:\n{}",
            describe(&out)
        );
    }
}

fn check_one_image(isola: &Isola, image: &Image, name: &str) {
    assert_image(isola, name, image);
    assert_eq!(isola.image_ids().len(), 1, "one image");
    assert_eq!(
        std::fs::read_dir(isola.root.join("layers"))
            .unwrap()
            .count(),
        image.layers.len(),
        "one directory per layer"
    );
    isola.assert_blobs_valid();
    isola.assert_clean();
}

#[test]
fn concurrent_loads_of_one_archive() {
    if !common::require_root() {
        return;
    }
    for format in [Format::OciTar, Format::DockerModern] {
        let isola = Isola::new();
        let image = busy_image();
        let p = format.write(&image, "busy:1", &isola.scratch());
        let children = (0..2)
            .map(|_| {
                isola
                    .command(&["load", "-i", p.to_str().unwrap()])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        wait_all(children);
        check_one_image(&isola, &image, "busy:1");
    }
}

#[test]
fn concurrent_loads_of_debian() {
    if !common::require_root() {
        return;
    }
    let Some(tar) = common::debian_tar() else {
        return;
    };
    let isola = Isola::new();
    let image = Image::new(vec![Layer::from_file(
        &tar,
        Compression::Gzip.oci_media_type(),
    )]);
    let p = isola.scratch().join("debian");
    oci_layout(&[(
        Node::Image(image.clone()),
        Some("docker.io/library/debian:race"),
    )])
    .write_dir(&p);
    let children = (0..2)
        .map(|_| {
            isola
                .command(&["load", "-i", p.to_str().unwrap()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_all(children);
    check_one_image(&isola, &image, "debian:race");
}

#[test]
fn concurrent_load_and_remove_of_other_images() {
    // A collection run by one process must not take content another is loading.
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = busy_image();
    let dir = isola.scratch();
    let p = Format::OciTar.write(&image, "busy:1", &dir);
    for i in 0..4 {
        isola.load(&Format::OciTar.write(&small_image(200 + i), &format!("victim:{i}"), &dir));
    }
    let loader = isola
        .command(&["load", "-i", p.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for i in 0..4 {
        isola.ok(&["rmi", &format!("victim:{i}")]);
    }
    wait_all(vec![loader]);
    check_one_image(&isola, &image, "busy:1");
}

#[test]
fn killed_load_is_swept_by_the_next_command() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = busy_image();
    let p = Format::OciTar.write(&image, "busy:1", &isola.scratch());
    let tmp = isola.root.join("tmp");
    let mut killed_mid_load = false;
    for _ in 0..20 {
        let mut child = isola
            .command(&["load", "-i", p.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill it as soon as it has something in flight.
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(20) {
            let busy = std::fs::read_dir(&tmp)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            if busy || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok();
        child.wait().unwrap();
        if !finished && std::fs::read_dir(&tmp).unwrap().next().is_some() {
            killed_mid_load = true;
            break;
        }
        if isola.image_ids().len() == 1 {
            isola.ok(&["rmi", "busy:1"]);
        }
    }
    assert!(killed_mid_load, "never caught the load in flight");
    // Any next command sweeps the leftovers of the killed one.
    assert!(
        isola.image_ids().is_empty(),
        "a killed load records no image"
    );
    isola.assert_clean();
    isola.load(&p);
    check_one_image(&isola, &image, "busy:1");
}
