//! octobackup's backup sets in a restic-format repository (v2), through rustic_core.
//!
//! One backup run is one snapshot: folders, single files and in-memory items (manifest,
//! secrets), each under its own snapshot path (`/folders/Packages`, `/database/X.bak`,
//! `/octobackup/manifest.json`). Stock restic can list, check and restore everything written
//! here. All calls are synchronous and run rustic on a helper thread of their own.

mod backup;
mod browse;
mod budget;
mod check;
mod chunk_memory;
mod config;
mod copy;
mod error;
mod keys;
mod logging;
mod memory;
mod merge;
mod mode;
mod overlay;
mod pathlist;
mod progress;
mod prune;
mod repo;
mod restore;
mod s3;
mod snapshots;
mod source;
mod ssh;
mod storage;
mod usage;
mod vpath;
mod walk_record;

pub use backup::{BackupSummary, SetOptions};
pub use browse::{EntryKind, FileEntry, READ_FILE_LIMIT};
pub use budget::{DEFAULT_RETRY_BUDGET, Gone};
pub use check::{AffectedSnapshot, CheckReport};
pub use config::{Password, RepoConfig, is_literal_secret_option, local_folder};
pub use copy::{Copied, CopyTarget};
pub use error::{RepoError, StorageFault};
pub use keys::KeyInfo;
pub use logging::wrap_logger;
pub use memory::tune_allocator;
pub use pathlist::{PathFile, PathFileWriter, SortedPaths, read_varint, tree_order, write_varint};
pub use progress::{NoProgress, ProgressSink};
pub use prune::PruneSummary;
pub use repo::{DEFAULT_COMPRESSION, Repo};
pub use restore::{Gate, RestoreSummary};
pub use s3::{ObjectLock, RecordedLock, Retention, S3Answer, S3Client, S3Response, weakened};
pub use snapshots::{SnapshotFigures, SnapshotInfo};
pub use source::{SEGMENT_LEN, SourceItem, WalkedAhead};
pub use ssh::close_ssh_connections;
pub use storage::Storage;
pub use usage::{DropEstimate, MAX_FILES_LISTED, ReadData};
pub use walk_record::{WalkRecorder, WalkedEntry};
pub use zeroize::Zeroizing;
