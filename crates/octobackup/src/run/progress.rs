//! What the operations show while they work, without knowing where it goes. The CLI implements
//! `Progress` (`cli::ui::Ui`: bars on a terminal, plain lines in a log, nothing on stdout with
//! `--json`), as the repository crate's `ProgressSink` is implemented for its own work: the
//! operations never import the CLI.

use octobackup_repo::ProgressSink;
use std::sync::Arc;

pub trait Progress: Send + Sync {
    /// A line for the user.
    fn note(&self, msg: &str);
    /// A changing status line (what the run is waiting for).
    fn status(&self, msg: &str);
    fn clear_status(&self);
    /// Progress of one long statement (BACKUP, RESTORE) in percent.
    fn percent_bar(&self, label: &str) -> Box<dyn Percent>;
    /// Progress of one repository transfer.
    fn repo_sink(&self, label: &str) -> Arc<dyn ProgressSink + Send + Sync>;
}

pub trait Percent: Send + Sync {
    fn set(&self, percent: f64);
    fn finish(&self);
}

/// What an operation holds: a shared handle to the caller's `Progress`, cheap to clone into
/// the tasks it spawns. Named `Ui` so the operations read as they did when they held the CLI's.
#[derive(Clone)]
pub struct Ui(Arc<dyn Progress>);

impl<P: Progress + 'static> From<P> for Ui {
    fn from(p: P) -> Self {
        Ui(Arc::new(p))
    }
}

impl std::ops::Deref for Ui {
    type Target = dyn Progress;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Layers point down: the operations and the domain below them never reach up into the
    /// command line (its terminal, its arguments). The CLI implements what they need.
    #[test]
    fn lower_layers_never_import_the_cli() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.join("error.rs"), src.join("secret.rs")];
        for dir in ["run", "octopus", "sqlserver", "backupset", "config"] {
            for e in std::fs::read_dir(src.join(dir)).unwrap() {
                files.push(e.unwrap().path());
            }
        }
        // Spelled in two parts so this test does not find itself.
        let (a, b) = (["crate", "::cli"].concat(), ["super", "::cli"].concat());
        let mut upward = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            for (n, line) in text.lines().enumerate() {
                let names_cli = |needle: &str| {
                    line.match_indices(needle).any(|(i, _)| {
                        // The module itself, not a name that starts the same (`client`).
                        !line[i + needle.len()..]
                            .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    })
                };
                if names_cli(&a) || names_cli(&b) {
                    upward.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(files.len() > 20, "{files:?}");
        assert!(
            upward.is_empty(),
            "imports of the CLI:\n{}",
            upward.join("\n")
        );
    }
}
