//! What the device remembers about updates: the installed version, the two
//! anti-rollback floors and the trusted-time floor, in one state-store
//! record (`update`). It describes the device, not its owner, so a factory
//! reset keeps it (`persist::DEVICE_RECORDS`).
//!
//! The floors only ever rise: a request to lower one is refused, so no
//! code path (a bug, a replayed "confirm", an old pending install) can
//! reopen a rollback. The record is written atomically by the store
//! (temp file, fsync, rename, directory fsync).
//!
//! A damaged record is an error, not the default: falling back to floor 0
//! would silently accept every old release again. Updates stay refused
//! until the record is restored or the device is factory-reset.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use update_manifest::{DeviceFacts, HardwareRevision, Model, Version};

use crate::persist::{Store, StoreError};

use super::Installed;

/// The record's name in the state store.
pub const RECORD_NAME: &str = "update";

/// The persisted update state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRecord {
    /// The confirmed running release.
    pub installed_version: Version,
    /// The lowest security version this device installs (only rises).
    pub security_floor: u32,
    /// The lowest key-ring version this device accepts (only rises); what
    /// makes a revoked signing key stay revoked here. Raised as soon as a
    /// newer root-signed key ring verifies, installed or not.
    pub keyring_floor: u64,
    /// The newest signed `issued` time this device has verified (Unix
    /// seconds; only rises): a clock set earlier is not trusted, so an
    /// expired manifest or key ring cannot be revived by turning time back.
    #[serde(default)]
    pub time_floor: i64,
}

/// A change that would lower a floor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to lower the {what} from {current} to {requested}: anti-rollback floors only rise"
)]
pub struct FloorWouldFall {
    /// "security floor" or "key-ring floor".
    pub what: &'static str,
    /// The stored floor.
    pub current: u64,
    /// The lower value asked for.
    pub requested: u64,
}

impl UpdateRecord {
    /// The record of a device that has never installed an update: the
    /// version its image says it runs, floors at zero.
    pub fn factory(running_version: Version) -> UpdateRecord {
        UpdateRecord {
            installed_version: running_version,
            security_floor: 0,
            keyring_floor: 0,
            time_floor: 0,
        }
    }

    /// The record after verifying a release signed under key ring
    /// `keyring_version` and issued at `issued`: the key-ring and time
    /// floors rise to them (never fall).
    pub fn after_verifying(&self, keyring_version: u64, issued: i64) -> UpdateRecord {
        UpdateRecord {
            keyring_floor: self.keyring_floor.max(keyring_version),
            time_floor: self.time_floor.max(issued),
            ..*self
        }
    }

    /// The facts `update_manifest::verify` checks a release against: model
    /// and revision from `/etc/hwrevision` (the file SWUpdate reads, see
    /// `DeviceFacts::parse_hwrevision`), version and floors from this
    /// record, and the largest artifact the device accepts.
    pub fn device_facts(
        &self,
        model: Model,
        hardware_revision: HardwareRevision,
        max_artifact_size: u64,
    ) -> DeviceFacts {
        DeviceFacts {
            model,
            hardware_revision,
            installed_version: self.installed_version,
            security_floor: self.security_floor,
            keyring_floor: self.keyring_floor,
            max_artifact_size,
        }
    }

    /// [`device_facts`](Self::device_facts) with model and revision read
    /// from the text of `/etc/hwrevision` (`"<model> <revision>"`).
    pub fn device_facts_from_hwrevision(
        &self,
        hwrevision: &str,
        max_artifact_size: u64,
    ) -> Result<DeviceFacts, update_manifest::FieldError> {
        let (model, revision) = DeviceFacts::parse_hwrevision(hwrevision)?;
        Ok(self.device_facts(model, revision, max_artifact_size))
    }

    /// The record to store once `installed` is confirmed running. Floors
    /// that the release would lower are refused.
    pub fn after_confirming(&self, installed: &Installed) -> Result<UpdateRecord, FloorWouldFall> {
        // The key-ring floor may already be above the installed release's
        // ring (a newer ring verified meanwhile); it stays there.
        self.checked_change(UpdateRecord {
            installed_version: installed.version,
            security_floor: installed.security_version,
            keyring_floor: self.keyring_floor.max(installed.keyring_version),
            time_floor: self.time_floor,
        })
    }

    /// `next`, unless it lowers a floor.
    pub fn checked_change(&self, next: UpdateRecord) -> Result<UpdateRecord, FloorWouldFall> {
        if next.security_floor < self.security_floor {
            return Err(FloorWouldFall {
                what: "security floor",
                current: self.security_floor.into(),
                requested: next.security_floor.into(),
            });
        }
        if next.keyring_floor < self.keyring_floor {
            return Err(FloorWouldFall {
                what: "key-ring floor",
                current: self.keyring_floor,
                requested: next.keyring_floor,
            });
        }
        if next.time_floor < self.time_floor {
            return Err(FloorWouldFall {
                what: "time floor",
                current: self.time_floor.unsigned_abs(),
                requested: next.time_floor.unsigned_abs(),
            });
        }
        Ok(next)
    }
}

/// The record could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Reading or writing the store failed (a damaged record included).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change would lower a floor; nothing was written.
    #[error(transparent)]
    FloorWouldFall(#[from] FloorWouldFall),
}

/// The update record, kept in memory and in the state store. A change
/// reaches the disk before it reaches memory.
#[derive(Debug)]
pub struct UpdateRecords {
    store: Arc<Store>,
    current: Mutex<UpdateRecord>,
}

impl UpdateRecords {
    /// Loads the record; a device without one gets
    /// [`UpdateRecord::factory`] (written at the first change). A damaged
    /// record is an error.
    pub fn open(store: Arc<Store>, running_version: Version) -> Result<UpdateRecords, StoreError> {
        let current = store
            .read_optional::<UpdateRecord>(RECORD_NAME)?
            .unwrap_or_else(|| UpdateRecord::factory(running_version));
        Ok(UpdateRecords {
            store,
            current: Mutex::new(current),
        })
    }

    /// The record now.
    pub fn get(&self) -> UpdateRecord {
        *self.lock()
    }

    /// Stores `next` unless it lowers a floor.
    pub fn set(&self, next: UpdateRecord) -> Result<UpdateRecord, RecordError> {
        let mut current = self.lock();
        let next = current.checked_change(next)?;
        self.store.write(RECORD_NAME, &next)?;
        *current = next;
        Ok(next)
    }

    /// Call once the new slot has booted and passed its checks (issue 6):
    /// persists the new version and raises the floors. Never before: see
    /// [`super::install`] for why.
    pub fn confirm(&self, installed: &Installed) -> Result<UpdateRecord, RecordError> {
        let mut current = self.lock();
        let next = current.after_confirming(installed)?;
        self.store.write(RECORD_NAME, &next)?;
        *current = next;
        tracing::info!(
            version = %next.installed_version,
            security_floor = next.security_floor,
            keyring_floor = next.keyring_floor,
            "update confirmed; floors raised"
        );
        Ok(next)
    }

    fn lock(&self) -> MutexGuard<'_, UpdateRecord> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::update::Slot;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn installed(version: &str, security: u32, keyring: u64) -> Installed {
        Installed {
            version: v(version),
            security_version: security,
            keyring_version: keyring,
            signed_by: "00".repeat(32).parse().unwrap(),
            target: Slot::B,
            bytes_streamed: 0,
        }
    }

    fn store(dir: &std::path::Path) -> Arc<Store> {
        let mut s = Store::open(dir).unwrap();
        s.commit().unwrap();
        Arc::new(s)
    }

    #[test]
    fn a_new_device_starts_at_its_image_version_with_zero_floors() {
        let dir = tempfile::tempdir().unwrap();
        let records = UpdateRecords::open(store(dir.path()), v("1.0.0")).unwrap();
        assert_eq!(records.get(), UpdateRecord::factory(v("1.0.0")));
        let facts =
            records
                .get()
                .device_facts("HRH-1".parse().unwrap(), "A".parse().unwrap(), 1 << 20);
        assert_eq!(facts.installed_version, v("1.0.0"));
        assert_eq!((facts.security_floor, facts.keyring_floor), (0, 0));
        assert_eq!(facts.max_artifact_size, 1 << 20);
        let from_file = records
            .get()
            .device_facts_from_hwrevision("HRH-1 A\n", 1 << 20)
            .unwrap();
        assert_eq!(from_file, facts);
        assert!(
            records
                .get()
                .device_facts_from_hwrevision("HRH-1", 1 << 20)
                .is_err()
        );
    }

    #[test]
    fn confirming_raises_the_floors_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let records = UpdateRecords::open(store(dir.path()), v("1.0.0")).unwrap();
            let r = records.confirm(&installed("1.1.0", 3, 2)).unwrap();
            assert_eq!((r.security_floor, r.keyring_floor), (3, 2));
        }
        let records = UpdateRecords::open(store(dir.path()), v("1.0.0")).unwrap();
        assert_eq!(
            records.get(),
            UpdateRecord {
                installed_version: v("1.1.0"),
                security_floor: 3,
                keyring_floor: 2,
                time_floor: 0,
            }
        );
    }

    #[test]
    fn a_verified_key_ring_and_signed_time_raise_their_floors_before_any_install() {
        let dir = tempfile::tempdir().unwrap();
        let records = UpdateRecords::open(store(dir.path()), v("1.0.0")).unwrap();
        records.confirm(&installed("1.1.0", 3, 2)).unwrap();
        let seen = records.get().after_verifying(3, 1_800_000_000);
        records.set(seen).unwrap();
        assert_eq!(
            (records.get().keyring_floor, records.get().time_floor),
            (3, 1_800_000_000)
        );
        // Verifying an older ring or time later lowers nothing.
        assert_eq!(
            records.get().after_verifying(2, 1_700_000_000),
            records.get()
        );
        // The release under ring 2 that was already installing still
        // confirms, and the floor stays at 3.
        let r = records.confirm(&installed("1.2.0", 3, 2)).unwrap();
        assert_eq!((r.keyring_floor, r.time_floor), (3, 1_800_000_000));
        let e = records
            .set(UpdateRecord {
                time_floor: 0,
                ..records.get()
            })
            .unwrap_err();
        assert!(e.to_string().contains("time floor"), "{e}");
    }

    #[test]
    fn floors_never_fall_and_a_refused_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let records = UpdateRecords::open(store(dir.path()), v("1.0.0")).unwrap();
        records.confirm(&installed("1.1.0", 3, 2)).unwrap();
        let before = records.get();

        let e = records.confirm(&installed("1.2.0", 2, 2)).unwrap_err();
        assert!(
            e.to_string()
                .contains("refusing to lower the security floor from 3 to 2"),
            "{e}"
        );
        let e = records
            .set(UpdateRecord {
                keyring_floor: 1,
                ..before
            })
            .unwrap_err();
        assert!(e.to_string().contains("key-ring floor from 2 to 1"), "{e}");
        let e = records
            .set(UpdateRecord {
                security_floor: 0,
                ..before
            })
            .unwrap_err();
        assert!(matches!(e, RecordError::FloorWouldFall(_)), "{e}");
        assert_eq!(records.get(), before);
        // Nothing reached the disk either.
        drop(records);
        let records = UpdateRecords::open(store(dir.path()), v("1.0.0")).unwrap();
        assert_eq!(records.get(), before);

        // Equal floors are fine (a feature release of the same security
        // version), and so is rising.
        records.confirm(&installed("1.2.0", 3, 2)).unwrap();
        records.confirm(&installed("1.3.0", 5, 4)).unwrap();
        assert_eq!(records.get().security_floor, 5);
    }

    #[test]
    fn a_damaged_record_is_an_error_not_floor_zero() {
        let dir = tempfile::tempdir().unwrap();
        {
            let records = UpdateRecords::open(store(dir.path()), v("1.0.0")).unwrap();
            records.confirm(&installed("1.1.0", 3, 2)).unwrap();
        }
        let path = dir.path().join("state").join(RECORD_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let e = UpdateRecords::open(store(dir.path()), v("1.0.0")).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}
