//! A fingerprint of an instance's state (database content and every folder file), taken at backup
//! time and compared with what a restore produced.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Fingerprint {
    /// sha256 of the database's logical content (independent of its name and file paths).
    pub database: String,
    /// folder name -> (path relative to the folder, with `/` separators -> sha256 of the content).
    pub folders: BTreeMap<String, BTreeMap<String, String>>,
}

impl Fingerprint {
    pub fn take(data_file: &Path, folders: &[(&str, &Path)]) -> anyhow::Result<Self> {
        let database = hex::encode(sqlserver_files::image::content_digest(data_file)?);
        let mut out = BTreeMap::new();
        for (name, dir) in folders {
            out.insert(name.to_string(), hash_tree(dir)?);
        }
        Ok(Fingerprint {
            database,
            folders: out,
        })
    }

    /// Human-readable differences, empty when equal.
    pub fn differences(&self, other: &Fingerprint) -> Vec<String> {
        let mut d = Vec::new();
        if self.database != other.database {
            d.push(format!(
                "database content differs ({} vs {})",
                &self.database[..12],
                &other.database[..12]
            ));
        }
        for (name, files) in &self.folders {
            let Some(theirs) = other.folders.get(name) else {
                d.push(format!("folder {name} missing"));
                continue;
            };
            for (path, hash) in files {
                match theirs.get(path) {
                    None => d.push(format!("{name}/{path} missing")),
                    Some(h) if h != hash => d.push(format!("{name}/{path} differs")),
                    _ => {}
                }
            }
            for path in theirs.keys().filter(|p| !files.contains_key(*p)) {
                d.push(format!("{name}/{path} unexpected"));
            }
        }
        for name in other
            .folders
            .keys()
            .filter(|n| !self.folders.contains_key(*n))
        {
            d.push(format!("folder {name} unexpected"));
        }
        d
    }
}

/// sha256 of every regular file under `dir`, keyed by its relative path.
pub fn hash_tree(dir: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut buf = vec![0u8; 1 << 20];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let ty = entry.file_type()?;
            let path = entry.path();
            if ty.is_dir() {
                stack.push(path);
            } else if ty.is_file() {
                let mut f = std::fs::File::open(&path)?;
                let mut h = Sha256::new();
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                let rel = path.strip_prefix(dir).expect("under dir");
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.insert(rel.join("/"), hex::encode(h.finalize()));
            }
        }
    }
    Ok(out)
}
