//! Looking inside images without booting them: the partition table
//! (`sfdisk`), ext4 filesystems (`debugfs`) and the FAT boot partition
//! (`mtools`, `grub-editenv`).

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct Partition {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// Partition `number` (1-based) of a raw disk image.
pub fn partition(image: &Path, number: usize) -> Partition {
    partitions(image)
        .into_iter()
        .nth(number - 1)
        .unwrap_or_else(|| panic!("{} has no partition {number}", image.display()))
}

/// The GPT partitions of a raw disk image, in table order.
pub fn partitions(image: &Path) -> Vec<Partition> {
    let out = Command::new("sfdisk")
        .arg("--json")
        .arg(image)
        .output()
        .expect("run sfdisk (qemu/setup-host installs it)");
    assert!(
        out.status.success(),
        "sfdisk cannot read the partition table of {}: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let table: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sfdisk JSON");
    let sector = table["partitiontable"]["sectorsize"]
        .as_u64()
        .unwrap_or(512);
    table["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| Partition {
            name: p["name"].as_str().unwrap_or_default().to_owned(),
            offset: p["start"].as_u64().expect("start") * sector,
            size: p["size"].as_u64().expect("size") * sector,
        })
        .collect()
}

/// An ext4 filesystem: a whole file, or one at an offset inside a disk image.
#[derive(Debug, Clone)]
pub struct Ext4 {
    spec: String,
}

impl Ext4 {
    pub fn file(path: &Path) -> Ext4 {
        Ext4 {
            spec: path.display().to_string(),
        }
    }

    pub fn in_image(image: &Path, part: &Partition) -> Ext4 {
        // e2fsprogs takes I/O options after '?' in the device name.
        Ext4 {
            spec: format!("{}?offset={}", image.display(), part.offset),
        }
    }

    /// Runs one debugfs request, read-only, and returns its output.
    pub fn debugfs(&self, request: &str) -> String {
        let out = Command::new("debugfs")
            .args(["-R", request])
            .arg(&self.spec)
            .output()
            .expect("run debugfs (e2fsprogs)");
        assert!(
            out.status.success(),
            "debugfs -R '{request}' {} failed: {}",
            self.spec,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs one debugfs request that writes (`debugfs -w`).
    pub fn debugfs_write(&self, request: &str) {
        let out = Command::new("debugfs")
            .args(["-w", "-R", request])
            .arg(&self.spec)
            .output()
            .expect("run debugfs (e2fsprogs)");
        assert!(
            out.status.success(),
            "debugfs -w -R '{request}' {} failed: {}",
            self.spec,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A file's contents; None when it does not exist.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        if !self.exists(path) {
            return None;
        }
        let out = Command::new("debugfs")
            .args(["-R", &format!("cat {path}")])
            .arg(&self.spec)
            .output()
            .expect("run debugfs");
        Some(out.stdout)
    }

    pub fn exists(&self, path: &str) -> bool {
        let out = Command::new("debugfs")
            .args(["-R", &format!("stat {path}")])
            .arg(&self.spec)
            .output()
            .expect("run debugfs");
        // debugfs exits 0 either way; a missing file is reported on stderr.
        !String::from_utf8_lossy(&out.stderr).contains("File not found")
            && String::from_utf8_lossy(&out.stdout).contains("Inode:")
    }

    /// Copies a directory tree out (debugfs rdump) into `into`; returns the copy.
    pub fn copy_out(&self, path: &str, into: &Path) -> PathBuf {
        std::fs::create_dir_all(into).expect("rdump target");
        self.debugfs(&format!("rdump {path} {}", into.display()));
        let name = Path::new(path).file_name().expect("a directory name");
        into.join(name)
    }
}

/// Reads a file from a FAT image (e.g. `::/grub/grubenv`) into `to`.
pub fn fat_read(fat: &Path, file: &str, to: &Path) {
    let status = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-o", "-i"])
        .arg(fat)
        .arg(file)
        .arg(to)
        .status()
        .expect("run mcopy (mtools)");
    assert!(
        status.success(),
        "mcopy {file} out of {} failed",
        fat.display()
    );
}

/// Replaces a file in a FAT image with `from`.
pub fn fat_write(fat: &Path, from: &Path, file: &str) {
    let status = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-o", "-i"])
        .arg(fat)
        .arg(from)
        .arg(file)
        .status()
        .expect("run mcopy (mtools)");
    assert!(status.success(), "mcopy into {} failed", fat.display());
}

/// `grub-editenv FILE list` as (name, value) pairs.
pub fn grubenv_list(env: &Path) -> Vec<(String, String)> {
    let out = Command::new("grub-editenv")
        .arg(env)
        .arg("list")
        .output()
        .expect("run grub-editenv (grub-common)");
    assert!(out.status.success(), "grub-editenv list failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

pub fn grubenv_set(env: &Path, assignments: &[&str]) {
    let status = Command::new("grub-editenv")
        .arg(env)
        .arg("set")
        .args(assignments)
        .status()
        .expect("run grub-editenv");
    assert!(status.success(), "grub-editenv set failed");
}

/// Every PEM certificate in `text`, as DER.
pub fn pem_certificates(text: &[u8]) -> Vec<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(text)
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect()
}
