//! A device's own disk: a qcow2 overlay on the base image, in a temporary
//! directory that also holds the firmware variables, the QMP socket and the
//! serial logs. Dropping it removes everything.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::offline::{self, Partition};

#[derive(Debug)]
pub struct Disk {
    dir: tempfile::TempDir,
    image: PathBuf,
    name: String,
}

impl Disk {
    /// A factory-new disk for the device called `name` (used in file names).
    pub fn fresh(name: &str) -> Disk {
        let image = crate::image();
        let dir = tempfile::Builder::new()
            .prefix(&format!("hearth-{name}-"))
            .tempdir()
            .expect("temporary directory for the disk");
        let status = Command::new(crate::repo_root().join("qemu/boot"))
            .args(["--no-build", "--prepare", "--image"])
            .arg(&image)
            .arg("--state-dir")
            .arg(dir.path())
            .status()
            .expect("run qemu/boot --prepare");
        assert!(status.success(), "qemu/boot --prepare failed ({status})");
        Disk {
            dir,
            image,
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn image(&self) -> &Path {
        &self.image
    }

    /// The state directory given to `qemu/boot --state-dir`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn overlay(&self) -> PathBuf {
        self.dir.path().join("disk.qcow2")
    }

    /// Partition `number` (1-based) of the disk as it is now, copied to a raw
    /// file in the disk's directory. The device must be powered off.
    pub fn read_partition(&self, number: usize) -> PathBuf {
        let part = self.partition(number);
        let out = self.dir.path().join(format!("part{number}.raw"));
        let status = Command::new("qemu-img")
            .args(["convert", "-O", "raw", "--image-opts"])
            .arg(self.opts(&part))
            .arg(&out)
            .status()
            .expect("run qemu-img convert");
        assert!(
            status.success(),
            "copying partition {number} out of {} failed",
            self.overlay().display()
        );
        out
    }

    /// Writes a raw partition file back into the overlay (the device must be off).
    pub fn write_partition(&self, number: usize, raw: &Path) {
        let part = self.partition(number);
        let len = std::fs::metadata(raw).expect("raw partition").len();
        assert_eq!(
            len,
            part.size,
            "{} is not the size of partition {number}",
            raw.display()
        );
        let status = Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw", "--target-image-opts"])
            .arg(raw)
            .arg(self.opts(&part))
            .status()
            .expect("run qemu-img convert");
        assert!(
            status.success(),
            "writing partition {number} into {} failed",
            self.overlay().display()
        );
    }

    /// Byte ranges of the overlay that the device has written (not inherited
    /// from the base image): data, and the zeros and discards that
    /// `detect-zeroes=unmap` keeps as zero clusters (`qemu/boot`).
    pub fn written_ranges(&self) -> Vec<(u64, u64)> {
        let out = Command::new("qemu-img")
            .args(["map", "--output=json"])
            .arg(self.overlay())
            .output()
            .expect("run qemu-img map");
        assert!(
            out.status.success(),
            "qemu-img map failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let map: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("qemu-img map JSON");
        map.as_array()
            .expect("qemu-img map gives a list")
            .iter()
            .filter(|e| e["depth"] == 0)
            .map(|e| {
                let start = e["start"].as_u64().expect("start");
                (start, start + e["length"].as_u64().expect("length"))
            })
            .collect()
    }

    pub fn partition(&self, number: usize) -> Partition {
        offline::partition(&self.image, number)
    }

    fn opts(&self, part: &Partition) -> String {
        format!(
            "driver=raw,offset={},size={},file.driver=qcow2,file.file.filename={}",
            part.offset,
            part.size,
            self.overlay().display()
        )
    }
}

impl Drop for Disk {
    /// A failing test keeps the serial logs and qemu/boot's messages of every
    /// boot of this disk in tests/artifacts/<name>/; the disk itself goes,
    /// unless `HEARTH_KEEP_FAILED_DISKS` is set (then its whole state
    /// directory stays, the overlay on the image it names in `base`).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if std::env::var_os("HEARTH_KEEP_FAILED_DISKS").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("{}: disk kept in {}", self.name, self.dir.path().display());
        }
        let keep = crate::artifacts_dir().join(&self.name);
        if std::fs::create_dir_all(&keep).is_err() {
            return;
        }
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("serial-") || name.starts_with("boot-") {
                    let _ = std::fs::copy(entry.path(), keep.join(&*name));
                }
            }
        }
        eprintln!("{}: serial logs kept in {}", self.name, keep.display());
    }
}

/// A raw disk image used in place (the U-Boot rig's `disk.img`), with a
/// scratch directory beside it: what the lab provisions on an aarch64 board.
#[derive(Debug)]
pub struct RawDisk {
    pub image: PathBuf,
    pub dir: PathBuf,
}

impl crate::lab::FactoryDisk for RawDisk {
    fn image(&self) -> &Path {
        &self.image
    }
    fn dir(&self) -> &Path {
        &self.dir
    }
    fn read_partition(&self, number: usize) -> PathBuf {
        use std::io::{Read, Seek, SeekFrom};
        let part = self.partition(number);
        let mut disk = std::fs::File::open(&self.image).expect("open the raw disk");
        disk.seek(SeekFrom::Start(part.offset)).expect("seek");
        let out = self.dir.join(format!("part{number}.raw"));
        let mut file = std::fs::File::create(&out).expect("create the partition file");
        let copied = std::io::copy(&mut disk.take(part.size), &mut file).expect("copy out");
        assert_eq!(copied, part.size, "partition {number} is cut short");
        out
    }
    fn write_partition(&self, number: usize, raw: &Path) {
        use std::io::{Seek, SeekFrom};
        let part = self.partition(number);
        let mut from = std::fs::File::open(raw).expect("open the partition file");
        assert_eq!(
            from.metadata().expect("metadata").len(),
            part.size,
            "{} is not the size of partition {number}",
            raw.display()
        );
        let mut disk = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.image)
            .expect("open the raw disk for writing");
        disk.seek(SeekFrom::Start(part.offset)).expect("seek");
        std::io::copy(&mut from, &mut disk).expect("copy in");
    }
    fn partition(&self, number: usize) -> Partition {
        offline::partition(&self.image, number)
    }
}
