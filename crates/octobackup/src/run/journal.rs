//! The run journal: before octobackup turns maintenance mode on it writes down what it found and
//! what it is about to change, durably; it deletes the record once maintenance mode is back as it
//! was. After a crash (kill -9, power loss) the record survives, and the next run or
//! `octobackup recover` puts maintenance mode back. A lock file per instance keeps two runs apart.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MaintenanceRecord {
    pub instance: String,
    pub url: String,
    /// Maintenance mode as found before octobackup changed it.
    pub previous: bool,
    /// What octobackup set it to.
    pub set_to: bool,
    /// When octobackup first asked for the change (the record is written before the request).
    pub changed_at: chrono::DateTime<chrono::Utc>,
    pub set_id: String,
    pub pid: u32,
    /// The server answered that the change is made. False while the request may still be on its
    /// way: a server can apply a request after the client gave up on it (timed out, or killed).
    /// Records of older versions lack it and count as unconfirmed, which is the safe reading.
    #[serde(default)]
    pub confirmed: bool,
    /// Until when a request that got no answer may still be applied by the server; recovery
    /// watches maintenance mode until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight_until: Option<chrono::DateTime<chrono::Utc>>,
}

fn safe_name(instance: &str) -> String {
    instance
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub struct StateDir {
    pub dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "another octobackup run holds the lock for instance '{instance}' ({path}); wait for it to finish"
    )]
    Busy { instance: String, path: PathBuf },
    #[error(
        "the run journal {path} exists but cannot be read ({cause}). An earlier run may have left maintenance mode on: check it in Octopus (Configuration > Maintenance) and turn it off if no backup is running, then delete {path}."
    )]
    Torn { path: PathBuf, cause: String },
    #[error(
        "the state folder {path} is not a folder (a file has that name). Set state_dir in the config to a folder octobackup may write, or move the file away."
    )]
    NotAFolder { path: PathBuf },
    #[error("cannot use the state folder {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Held for the whole run; the OS releases it when the process ends, even on kill -9.
pub struct InstanceLock {
    _file: File,
}

impl StateDir {
    pub fn new(dir: &Path) -> Self {
        StateDir {
            dir: dir.to_path_buf(),
        }
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
        let path = path.to_path_buf();
        move |cause| JournalError::Io {
            path: path.clone(),
            cause,
        }
    }

    fn create(&self) -> Result<(), JournalError> {
        if self.dir.exists() && !self.dir.is_dir() {
            return Err(JournalError::NotAFolder {
                path: self.dir.clone(),
            });
        }
        std::fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))
    }

    /// Where a backup of `instance` keeps the chunks of its database backup for the next one
    /// (octobackup_repo's chunk memory: fingerprints keyed by the repository's key, no secret).
    pub fn chunk_memory_path(&self, instance: &str) -> PathBuf {
        self.dir
            .join(format!("{}.database-chunks", safe_name(instance)))
    }

    pub fn lock(&self, instance: &str) -> Result<InstanceLock, JournalError> {
        self.create()?;
        let path = self.dir.join(format!("{}.lock", safe_name(instance)));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(self.io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(InstanceLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(JournalError::Busy {
                instance: instance.to_string(),
                path,
            }),
            Err(std::fs::TryLockError::Error(cause)) => Err(JournalError::Io { path, cause }),
        }
    }

    fn record_path(&self, instance: &str) -> PathBuf {
        self.dir
            .join(format!("{}.maintenance.json", safe_name(instance)))
    }

    /// Writes the record durably (temp file, fsync, rename, fsync of the folder where possible).
    pub fn write_record(&self, record: &MaintenanceRecord) -> Result<(), JournalError> {
        self.create()?;
        let path = self.record_path(&record.instance);
        let tmp = path.with_extension("json.tmp");
        let mut f = File::create(&tmp).map_err(self.io(&tmp))?;
        f.write_all(&serde_json::to_vec_pretty(record).expect("record serializes"))
            .map_err(self.io(&tmp))?;
        f.sync_all().map_err(self.io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(self.io(&path))?;
        #[cfg(unix)]
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The record, if there is one. A record that cannot be parsed (a torn write, a disk error, a
    /// hand edit) is an error, never "no record": it may stand for maintenance mode left on.
    pub fn read_record(&self, instance: &str) -> Result<Option<MaintenanceRecord>, JournalError> {
        let path = self.record_path(instance);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| JournalError::Torn {
                    path,
                    cause: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(JournalError::Io { path, cause: e }),
        }
    }

    pub fn clear_record(&self, instance: &str) -> Result<(), JournalError> {
        let path = self.record_path(instance);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(JournalError::Io { path, cause: e }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_instance_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let held = state.lock("OctopusServer").unwrap();
        let e = state
            .lock("OctopusServer")
            .err()
            .expect("second lock refused");
        assert!(
            e.to_string()
                .contains("another octobackup run holds the lock")
        );
        state.lock("Other").unwrap();
        drop(held);
        state.lock("OctopusServer").unwrap();
    }

    #[test]
    fn records_survive_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert_eq!(state.read_record("i/1").unwrap(), None);
        let r = MaintenanceRecord {
            instance: "i/1".into(),
            url: "http://x".into(),
            previous: false,
            set_to: true,
            changed_at: chrono::Utc::now(),
            set_id: "s".into(),
            pid: 1,
            confirmed: true,
            in_flight_until: None,
        };
        state.write_record(&r).unwrap();
        assert_eq!(state.read_record("i/1").unwrap(), Some(r));
        state.clear_record("i/1").unwrap();
        state.clear_record("i/1").unwrap();
        assert_eq!(state.read_record("i/1").unwrap(), None);
    }

    #[test]
    fn a_torn_record_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        std::fs::write(
            dir.path().join("i.maintenance.json"),
            b"{\"instance\": \"i\", \"ur",
        )
        .unwrap();
        let e = state.read_record("i").unwrap_err();
        assert!(matches!(e, JournalError::Torn { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("Configuration > Maintenance"), "{text}");
        assert!(text.contains("then delete"), "{text}");
    }

    #[test]
    fn an_old_record_without_confirmation_reads_as_unconfirmed() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        std::fs::write(
            dir.path().join("i.maintenance.json"),
            br#"{"instance":"i","url":"http://x","previous":false,"set_to":true,"changed_at":"2026-01-01T00:00:00Z","set_id":"s","pid":1}"#,
        )
        .unwrap();
        let r = state.read_record("i").unwrap().unwrap();
        assert!(!r.confirmed);
        assert_eq!(r.in_flight_until, None);
    }

    #[test]
    fn a_state_folder_that_is_a_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state");
        std::fs::write(&file, b"").unwrap();
        let e = StateDir::new(&file).lock("i").err().expect("refused");
        assert!(matches!(e, JournalError::NotAFolder { .. }), "{e}");
        assert!(e.to_string().contains("Set state_dir"), "{e}");
    }
}
