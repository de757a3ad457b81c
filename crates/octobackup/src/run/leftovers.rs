//! What a killed `restore` or `drill` leaves: its folder on the staging share (an unencrypted copy
//! of the database .bak) and its temporary or scratch database on SQL Server. Each such folder
//! holds a marker, `octobackup-run.json`, naming the instance and the database, written before any
//! .bak is copied in and kept until that database is gone or renamed. `recover`, and the next
//! backup, restore or drill of the instance, remove them; `doctor` reports them.
//!
//! A database is only ever dropped here when a marker of this instance names it AND its name has
//! the shape octobackup gives its own (`_octobackup_restoring_<8 hex>`, `_octobackup_drill_<6
//! hex>`): never a user's database.

use crate::sqlserver::SqlServer;
use crate::sqlserver::admin::{database_state, drop_quietly};
use crate::sqlserver::client::Session;
use std::path::{Path, PathBuf};

/// The marker's file name (the same as a backup's staging folder's; the folder names differ).
pub const MARKER: &str = "octobackup-run.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Restore,
    Drill,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    pub instance: String,
    pub kind: Kind,
    /// The temporary (restore) or scratch (drill) database.
    pub database: String,
    /// A restore with --replace: the database it replaces. Once that one is dropped, the
    /// temporary database is the only copy and is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// A drill's folder of restored server folders (anywhere, with --scratch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch_folder: Option<PathBuf>,
}

/// Creates `dir` and writes the marker into it (before anything else goes in).
pub fn write(dir: &Path, marker: &Marker) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let text = serde_json::to_vec(marker).expect("serializable");
    std::fs::write(dir.join(MARKER), text)
}

/// Removes everything in `dir` but the marker: the .bak copies go, the record of the database stays.
pub fn remove_copies(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name() != MARKER {
                let p = e.path();
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            }
        }
    }
}

fn hex_of_len(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The kind of a folder named as restore (`octobackup-restore-<8 hex>`) or drill
/// (`octobackup-drill-<6 hex>-database`) names their staging folders.
pub fn folder_kind(name: &str) -> Option<Kind> {
    if let Some(h) = name.strip_prefix("octobackup-restore-") {
        return hex_of_len(h, 8).then_some(Kind::Restore);
    }
    let h = name
        .strip_prefix("octobackup-drill-")?
        .strip_suffix("-database")?;
    hex_of_len(h, 6).then_some(Kind::Drill)
}

/// True for a drill's scratch folder name (`octobackup-drill-<6 hex>`).
fn is_scratch_folder_name(name: &str) -> bool {
    name.strip_prefix("octobackup-drill-")
        .is_some_and(|h| hex_of_len(h, 6))
}

/// True only for names octobackup gives its temporary and scratch databases.
pub fn is_temporary_database(name: &str) -> bool {
    let tail = |marker: &str, n: usize| {
        name.rfind(marker)
            .is_some_and(|i| i > 0 && hex_of_len(&name[i + marker.len()..], n))
    };
    tail("_octobackup_restoring_", 8) || tail("_octobackup_drill_", 6)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Leftover {
    pub dir: PathBuf,
    pub marker: Marker,
}

/// The restore and drill folders on the staging share whose marker names this instance.
pub fn find(instance_name: &str, staging: &Path) -> Vec<Leftover> {
    let Ok(rd) = std::fs::read_dir(staging) else {
        return Vec::new();
    };
    let mut found: Vec<Leftover> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let kind = folder_kind(e.file_name().to_str()?)?;
            let marker: Marker =
                serde_json::from_slice(&std::fs::read(e.path().join(MARKER)).ok()?).ok()?;
            (marker.instance == instance_name && marker.kind == kind).then(|| Leftover {
                dir: e.path(),
                marker,
            })
        })
        .collect();
    found.sort_by(|a, b| a.dir.cmp(&b.dir));
    found
}

/// Which leftovers the caller may remove: a restore's only under the SQL Server instance lock,
/// a drill's only under the instance's drill lock. `except` is the calling restore's own
/// temporary database (it resumes it).
pub struct Allowed<'a> {
    pub restore: bool,
    pub drill: bool,
    pub except: Option<&'a str>,
}

/// Removes the allowed leftovers of this instance; returns a note for each (what went, or what
/// was kept and why).
pub async fn remove(
    instance_name: &str,
    staging: &Path,
    server: &SqlServer,
    allowed: Allowed<'_>,
) -> Vec<String> {
    let mut notes = Vec::new();
    let mut session: Option<Session> = None;
    for l in find(instance_name, staging) {
        let ok = match l.marker.kind {
            Kind::Restore => allowed.restore,
            Kind::Drill => allowed.drill,
        };
        if !ok || allowed.except == Some(l.marker.database.as_str()) {
            continue;
        }
        let what = match l.marker.kind {
            Kind::Restore => "an interrupted restore",
            Kind::Drill => "an interrupted drill",
        };
        // The .bak copies go in any case: the next run stages afresh.
        remove_copies(&l.dir);
        if session.is_none() {
            session = server.connect().await.ok();
        }
        let db = &l.marker.database;
        let kept = match session.as_mut() {
            None => Some(format!(
                "kept {} (its database copy was deleted): SQL Server did not answer, so [{db}], the temporary database of {what}, may still be there. Run `octobackup recover` again once SQL Server answers.",
                l.dir.display()
            )),
            Some(_) if !is_temporary_database(db) => Some(format!(
                "kept {} (its database copy was deleted): its marker names [{db}], which is not a name octobackup gives its temporary databases, so it was not dropped. Check that database by hand.",
                l.dir.display()
            )),
            Some(s) => settle_database(s, &l.marker, what).await.err(),
        };
        match kept {
            Some(note) => notes.push(note),
            None => {
                if let Some(p) = &l.marker.scratch_folder
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(is_scratch_folder_name)
                    && p.exists()
                {
                    match std::fs::remove_dir_all(p) {
                        Ok(()) => notes.push(format!(
                            "removed {}, the scratch folders of {what}",
                            p.display()
                        )),
                        Err(e) => notes.push(format!(
                            "warning: could not remove {}, the scratch folders of {what}: {e}. Delete it by hand.",
                            p.display()
                        )),
                    }
                }
                match std::fs::remove_dir_all(&l.dir) {
                    Ok(()) => notes.push(format!(
                        "removed {}, the staging folder of {what}",
                        l.dir.display()
                    )),
                    Err(e) => notes.push(format!(
                        "warning: could not remove {}, the staging folder of {what}: {e}. Delete it by hand.",
                        l.dir.display()
                    )),
                }
            }
        }
    }
    notes
}

/// Drops the marker's database, unless it is the only copy left of a database being replaced.
/// `Err(note)` when the folder must stay (it still records that database).
async fn settle_database(s: &mut Session, m: &Marker, what: &str) -> Result<(), String> {
    let db = &m.database;
    let present = database_state(s, db).await.map_err(|e| {
        format!(
            "kept the marker of {what}: cannot look up [{db}]: {}",
            e.message
        )
    })?;
    if present.is_none() {
        return Ok(());
    }
    if let Some(target) = &m.replaces
        && database_state(s, target)
            .await
            .map_err(|e| e.message)?
            .is_none()
    {
        return Err(format!(
            "kept [{db}]: it is the restored, checked copy of [{target}], which {what} had already dropped. Run the same restore again to finish (it renames [{db}] to [{target}])."
        ));
    }
    // SQL Server may still be ending the RESTORE of the killed run's connection: retry a little.
    for attempt in 0..10 {
        match drop_quietly(s, db).await {
            Ok(()) => break,
            Err(e) if attempt == 9 => {
                return Err(format!(
                    "warning: could not drop [{db}], the temporary database of {what}: {}. Run `octobackup recover` again.",
                    e.message
                ));
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
    tracing::info!("dropped [{db}], the temporary database of {what}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_octobackup_names_are_temporary() {
        assert!(is_temporary_database("Octo_octobackup_restoring_0123abcd"));
        assert!(is_temporary_database(
            "OctopusDeploy_octobackup_drill_0a1b2c"
        ));
        assert!(!is_temporary_database("OctopusDeploy"));
        assert!(!is_temporary_database("_octobackup_drill_0a1b2c"));
        assert!(!is_temporary_database("Octo_octobackup_restoring_0123ABCD"));
        assert!(!is_temporary_database("Octo_octobackup_drill_0a1b2c_old"));
        assert_eq!(
            folder_kind("octobackup-restore-0123abcd"),
            Some(Kind::Restore)
        );
        assert_eq!(
            folder_kind("octobackup-drill-0a1b2c-database"),
            Some(Kind::Drill)
        );
        assert_eq!(folder_kind("octobackup-drill-0a1b2c"), None);
        assert_eq!(folder_kind("octobackup-20260101T000000Z-0123ab"), None);
    }

    #[test]
    fn only_this_instances_marked_folders_are_found() {
        let d = tempfile::tempdir().unwrap();
        let m = |instance: &str, kind| Marker {
            instance: instance.into(),
            kind,
            database: "Octo_octobackup_restoring_0123abcd".into(),
            replaces: None,
            scratch_folder: None,
        };
        let mine = d.path().join("octobackup-restore-0123abcd");
        write(&mine, &m("A", Kind::Restore)).unwrap();
        std::fs::write(mine.join("OctopusDeploy.bak"), b"x").unwrap();
        write(
            &d.path().join("octobackup-restore-99999999"),
            &m("B", Kind::Restore),
        )
        .unwrap();
        // A drill's marker in a restore's folder is not trusted.
        write(
            &d.path().join("octobackup-restore-11111111"),
            &m("A", Kind::Drill),
        )
        .unwrap();
        std::fs::create_dir(d.path().join("octobackup-restore-22222222")).unwrap();
        let found = find("A", d.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].dir, mine);
        remove_copies(&mine);
        let left: Vec<_> = std::fs::read_dir(&mine).unwrap().flatten().collect();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].file_name(), MARKER);
    }
}
