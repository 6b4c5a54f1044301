//! The state store: small records in the data directory, written atomically
//! and checked on every read.
//!
//! A record is a header line (`hearth-record 1 sha256=<hex> len=<n>`) then a
//! JSON body. Writes go to a temporary file that is fsynced, renamed over the
//! record and followed by an fsync of the directory, so a power cut leaves
//! either the old record or the new one, never a mix.
//!
//! The store knows whether the device is factory-new. A new store is built
//! in `state.new/` and renamed to `state/` only once its first records are
//! written (`commit`), so a power cut during the very first boot leaves no
//! half-made store, and a `state/` directory whose marker is missing or
//! damaged is an error, never "factory new". That is what keeps a damaged
//! data partition from reopening first-boot setup. A factory reset removes
//! `state/` as one rename, after copying the records that describe the
//! device rather than its owner ([`DEVICE_RECORDS`]: the anti-rollback and
//! time floors) to `kept/`, from where the next new store starts.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Records a factory reset keeps: what the device has verified (its
/// update floors), not what its owner set. Dropping them would let an
/// older signed release install again after a reset.
pub const DEVICE_RECORDS: &[&str] = &[crate::update::RECORD_NAME];

const LIVE: &str = "state";
const KEPT: &str = "kept";
const STAGING: &str = "state.new";
const DISCARDED: &str = "state.old";
const MARKER: &str = "store-format";
const MARKER_CONTENT: &str = "hearth-store 1\n";
const HEADER_PREFIX: &str = "hearth-record 1 ";
const TEMP_PREFIX: &str = ".tmp-";

#[derive(Debug)]
pub struct Store {
    /// Where records are read and written: `state/`, or `state.new/` until
    /// a new store is committed.
    dir: PathBuf,
    root: PathBuf,
    new: bool,
    /// Held for the store's lifetime: one process owns the data directory.
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the data directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the state record {path} is missing although the device has been set up. \
         The data partition may be damaged; restore it or factory-reset the device."
    )]
    Missing { path: PathBuf },
    #[error(
        "the state record {path} is damaged ({reason}). \
         Restore the data partition or factory-reset the device."
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "the data directory {path} is in use by another hearthd. Stop it first \
         (systemctl stop hearthd)."
    )]
    Busy { path: PathBuf },
    #[error(
        "the data directory {path} holds records but no store marker, so it cannot be \
         trusted as factory-new. Restore the data partition or factory-reset the device."
    )]
    Unmarked { path: PathBuf },
}

impl Store {
    /// Opens the store under `root`, or starts a new one if there is none.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(io_err(&root))?;
        let lock = lock(&root)?;
        let live = root.join(LIVE);
        // Leftovers of an interrupted first boot or factory reset.
        for leftover in [STAGING, DISCARDED] {
            remove_dir_if_present(&root.join(leftover)).map_err(io_err(&root))?;
        }
        let kept = root.join(KEPT);
        if !live.exists() {
            let staging = root.join(STAGING);
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&staging)
                .map_err(io_err(&staging))?;
            let store = Store {
                dir: staging,
                root,
                new: true,
                _lock: lock,
            };
            // What a factory reset kept goes into the new store; `kept/` is
            // removed once that store is committed.
            for name in DEVICE_RECORDS {
                if let Some(bytes) = read_if_present(&kept.join(name)).map_err(io_err(&kept))? {
                    store.write_file(name, &bytes)?;
                }
            }
            store.write_file(MARKER, MARKER_CONTENT.as_bytes())?;
            return Ok(store);
        }
        // A kept copy beside a live store is a leftover (the reset or the
        // commit after it was interrupted at its very end).
        remove_dir_if_present(&kept).map_err(io_err(&root))?;
        remove_stale_temp_files(&live).map_err(io_err(&live))?;
        let marker = live.join(MARKER);
        match fs::read_to_string(&marker) {
            Ok(content) if content == MARKER_CONTENT => Ok(Store {
                dir: live,
                root,
                new: false,
                _lock: lock,
            }),
            Ok(_) => Err(StoreError::Corrupt {
                path: marker,
                reason: "unknown store format".into(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::Unmarked { path: live })
            }
            Err(source) => Err(StoreError::Io {
                path: marker,
                source,
            }),
        }
    }

    /// Makes a new store live, with everything written to it so far.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if !self.new || self.dir.file_name() != Some(STAGING.as_ref()) {
            return Ok(());
        }
        let live = self.root.join(LIVE);
        let rename = fs::rename(&self.dir, &live).and_then(|()| File::open(&self.root)?.sync_all());
        rename.map_err(|source| StoreError::Io {
            path: live.clone(),
            source,
        })?;
        self.dir = live;
        remove_dir_if_present(&self.root.join(KEPT)).map_err(|source| StoreError::Io {
            path: self.root.join(KEPT),
            source,
        })?;
        Ok(())
    }

    /// Erases the store as one step: afterwards the device is factory-new.
    pub fn erase(root: &Path) -> Result<(), StoreError> {
        let io_err = |source| StoreError::Io {
            path: root.to_path_buf(),
            source,
        };
        let _lock = lock(root)?;
        let live = root.join(LIVE);
        let kept = root.join(KEPT);
        if live.exists() {
            for name in DEVICE_RECORDS {
                if let Some(bytes) = read_if_present(&live.join(name)).map_err(io_err)? {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&kept)
                        .map_err(io_err)?;
                    write_atomically(&kept, name, &bytes, 0o600).map_err(io_err)?;
                }
            }
            fs::rename(&live, root.join(DISCARDED)).map_err(io_err)?;
            File::open(root)
                .and_then(|dir| dir.sync_all())
                .map_err(io_err)?;
        }
        remove_dir_if_present(&root.join(DISCARDED)).map_err(io_err)
    }

    /// True when this run set the store up: the device is factory-new.
    pub fn is_new(&self) -> bool {
        self.new
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads a record. A missing or damaged record is an error.
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Result<T, StoreError> {
        let body = self.read_bytes(name)?;
        serde_json::from_slice(&body).map_err(|e| StoreError::Corrupt {
            path: self.dir.join(name),
            reason: e.to_string(),
        })
    }

    /// Reads a record's checked body, for callers that parse it themselves.
    pub fn read_bytes(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.dir.join(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing { path });
            }
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        check_record(&bytes)
            .map(<[u8]>::to_vec)
            .map_err(|reason| StoreError::Corrupt { path, reason })
    }

    /// Reads a record that may legitimately not exist yet.
    pub fn read_optional<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.read(name) {
            Ok(value) => Ok(Some(value)),
            Err(StoreError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a record atomically.
    pub fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let body = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Corrupt {
            path: self.dir.join(name),
            reason: format!("cannot encode: {e}"),
        })?;
        self.write_bytes(name, &body)
    }

    /// Writes an already-encoded record body atomically.
    pub fn write_bytes(&self, name: &str, body: &[u8]) -> Result<(), StoreError> {
        let mut record = format!(
            "{HEADER_PREFIX}sha256={} len={}\n",
            sha256_hex(body),
            body.len()
        )
        .into_bytes();
        record.extend_from_slice(body);
        self.write_file(name, &record)
    }

    /// Writes raw bytes atomically with mode 0600 (keys, certificates).
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomically(&self.dir, name, bytes, 0o600).map_err(|source| StoreError::Io {
            path: self.dir.join(name),
            source,
        })
    }

    /// Reads raw bytes written by [`Store::write_file`]; `None` if absent.
    pub fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.dir.join(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }
}

/// A record kept in memory and in the store: reading is free, and a change
/// reaches the disk before it reaches memory.
#[derive(Debug)]
pub struct Cached<T> {
    store: Arc<Store>,
    name: &'static str,
    value: Mutex<T>,
}

impl<T: Serialize + DeserializeOwned + Clone + Default> Cached<T> {
    /// For records whose default is safe (settings, the relay): a missing
    /// record is the default, and a damaged one is reported and replaced by
    /// the default at the next change.
    pub fn open(store: Arc<Store>, name: &'static str) -> Cached<T> {
        let value = store.read_optional(name).unwrap_or_else(|error| {
            tracing::warn!(%error, "using the default instead");
            None
        });
        Cached {
            store,
            name,
            value: Mutex::new(value.unwrap_or_default()),
        }
    }

    pub fn get(&self) -> T {
        self.lock().clone()
    }

    pub fn set(&self, value: T) -> Result<(), StoreError> {
        let mut current = self.lock();
        self.store.write(self.name, &value)?;
        *current = value;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn check_record(bytes: &[u8]) -> Result<&[u8], String> {
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| "header is not text")?;
    let body = &bytes[newline + 1..];
    let fields = header
        .strip_prefix(HEADER_PREFIX)
        .ok_or("unknown record format")?;
    let (mut sha, mut len) = (None, None);
    for field in fields.split(' ') {
        match field.split_once('=') {
            Some(("sha256", v)) => sha = Some(v),
            Some(("len", v)) => len = v.parse::<usize>().ok(),
            _ => return Err(format!("unexpected header field `{field}`")),
        }
    }
    if len != Some(body.len()) {
        return Err(format!(
            "expected {} bytes, found {}",
            len.map_or("?".into(), |l| l.to_string()),
            body.len()
        ));
    }
    if sha != Some(sha256_hex(body).as_str()) {
        return Err("checksum mismatch".into());
    }
    Ok(body)
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `dir/name` so that a power cut leaves the old file or the new
/// one, whole: a temporary file beside it (created anew, `mode`), fsync,
/// rename, directory fsync. The one way the daemon writes a file that must
/// survive; a temporary file a power cut leaves behind starts with
/// `.tmp-`.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    let temp = dir.join(format!("{TEMP_PREFIX}{name}.{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, dir.join(name))?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn lock(root: &Path) -> Result<Flock<File>, StoreError> {
    let path = root.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        nix::errno::Errno::EWOULDBLOCK => StoreError::Busy {
            path: root.to_path_buf(),
        },
        errno => StoreError::Io {
            path,
            source: errno.into(),
        },
    })
}

fn read_if_present(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A power cut can leave a temp file behind; it was never renamed, so it
/// holds nothing the store relies on.
fn remove_stale_temp_files(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Claim {
        owner: String,
    }

    fn claim() -> Claim {
        Claim {
            owner: "alice".into(),
        }
    }

    fn committed(dir: &Path) -> Store {
        let mut store = Store::open(dir).expect("open");
        store.commit().expect("commit");
        store
    }

    #[test]
    fn a_new_store_is_new_until_committed_and_then_never_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        assert!(store.is_new());
        store.write("claim", &claim()).expect("write");
        drop(store);
        // Not committed: the interrupted first boot starts over, cleanly.
        let mut store = Store::open(dir.path()).expect("reopen");
        assert!(store.is_new());
        assert!(matches!(
            store.read::<Claim>("claim"),
            Err(StoreError::Missing { .. })
        ));
        store.write("claim", &claim()).expect("write");
        store.commit().expect("commit");
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert!(!store.is_new());
        assert_eq!(store.read::<Claim>("claim").expect("read"), claim());
    }

    #[test]
    fn records_round_trip_and_are_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = committed(dir.path());
        store.write("claim", &claim()).expect("write");
        assert_eq!(store.read::<Claim>("claim").expect("read"), claim());
        let mode = fs::metadata(store.dir().join("claim"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_missing_record_in_a_set_up_store_is_an_error_not_factory_new() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = committed(dir.path());
        store.write("claim", &claim()).expect("write");
        fs::remove_file(store.dir().join("claim")).expect("remove");
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert!(!store.is_new());
        assert!(matches!(
            store.read::<Claim>("claim"),
            Err(StoreError::Missing { .. })
        ));
    }

    #[test]
    fn truncated_flipped_and_garbage_records_are_detected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = committed(dir.path());
        store.write("claim", &claim()).expect("write");
        let path = store.dir().join("claim");
        let good = fs::read(&path).expect("read");

        let damaged: Vec<Vec<u8>> = vec![
            good[..good.len() - 3].to_vec(),
            {
                let mut flipped = good.clone();
                let last = flipped.len() - 2;
                flipped[last] ^= 0x01;
                flipped
            },
            b"{\"owner\":\"mallory\"}".to_vec(),
            Vec::new(),
        ];
        for bytes in damaged {
            fs::write(&path, &bytes).expect("damage");
            let err = store
                .read::<Claim>("claim")
                .expect_err("damaged record must not load");
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains("factory-reset"), "{err}");
        }
    }

    #[test]
    fn a_store_without_its_marker_is_not_factory_new() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = committed(dir.path());
        store.write("claim", &claim()).expect("write");
        fs::remove_file(store.dir().join(MARKER)).expect("remove marker");
        drop(store);
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Unmarked { .. })
        ));
    }

    #[test]
    fn only_one_process_owns_the_data_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let held = committed(dir.path());
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Busy { .. })
        ));
        assert!(matches!(
            Store::erase(dir.path()),
            Err(StoreError::Busy { .. })
        ));
        drop(held);
        assert!(Store::open(dir.path()).is_ok());
    }

    #[test]
    fn erase_keeps_the_device_records_and_forgets_the_owner() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = committed(dir.path());
        store.write("claim", &claim()).expect("write");
        store
            .write(crate::update::RECORD_NAME, &serde_json::json!({"floor": 7}))
            .expect("write");
        drop(store);
        Store::erase(dir.path()).expect("erase");
        let mut store = Store::open(dir.path()).expect("open");
        assert!(store.is_new(), "the owner's device is factory-new again");
        assert!(matches!(
            store.read::<Claim>("claim"),
            Err(StoreError::Missing { .. })
        ));
        let kept: serde_json::Value = store.read(crate::update::RECORD_NAME).expect("kept");
        assert_eq!(kept["floor"], 7);
        store.commit().expect("commit");
        assert!(
            !dir.path().join(KEPT).exists(),
            "the kept copy is gone once committed"
        );
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        let kept: serde_json::Value = store.read(crate::update::RECORD_NAME).expect("kept");
        assert_eq!(kept["floor"], 7);
    }

    #[test]
    fn erase_makes_the_device_factory_new() {
        let dir = tempfile::tempdir().expect("temp dir");
        committed(dir.path())
            .write("claim", &claim())
            .expect("write");
        Store::erase(dir.path()).expect("erase");
        assert!(Store::open(dir.path()).expect("open").is_new());
    }

    #[test]
    fn stale_temp_files_from_a_power_cut_are_removed_and_the_old_record_stays() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = committed(dir.path());
        store.write("claim", &claim()).expect("write");
        let temp = store.dir().join(".tmp-claim.999");
        fs::write(&temp, b"half a wri").expect("temp");
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.read::<Claim>("claim").expect("read"), claim());
        assert!(!temp.exists());
    }
}
