//! Secrets escrow: each set's master key and license are ALSO sealed to `age` public keys
//! (`[escrow] age_recipients`), so a second party (a security officer, a break-glass identity
//! kept offline) can recover them without the repository password.
//!
//! The sealed files go two places:
//! - inside the set (`/octobackup/escrow/*.age`), so they travel with it (copies, restores);
//! - beside restic's own folders, as plain files in `<repository>/octobackup-escrow/<set-id>/`
//!   (objects under that prefix in a bucket or container, files under it on an SFTP server,
//!   written through the repository's own backend and credentials). Everything inside the
//!   repository proper is encrypted with the repository's key, so without the password only
//!   these copies are readable: `key recover` reads them. restic and rustic ignore folders they
//!   do not know.
//!
//! age's ASCII armor is used so the files survive any transport and can be opened with `age -d`.

use crate::error::{Exit, Failure};
use crate::secret::Secret;
use octobackup_repo::{Repo, SourceItem, Storage};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub const ESCROW_DIR: &str = "/octobackup/escrow";
pub const MASTER_KEY_SEALED: &str = "/octobackup/escrow/master-key.age";
pub const LICENSE_SEALED: &str = "/octobackup/escrow/license.xml.age";
/// The folder in a local repository that holds the plain copies, one folder per set.
pub const OUTSIDE_DIR: &str = "octobackup-escrow";
const MASTER_KEY_FILE: &str = "master-key.age";
const LICENSE_FILE: &str = "license.xml.age";

/// Where a repository's escrow copies are.
pub enum Place {
    /// `<folder>/octobackup-escrow/`.
    Local(PathBuf),
    /// Objects under `octobackup-escrow/` through the repository's backend.
    Remote(Storage),
    /// A remote location whose backend options are not known here.
    Unknown,
}

/// Anything that says where the repository is: its location string (local folders only), the
/// config's repository (location and options), or an open repository.
pub trait EscrowPlace {
    fn escrow_place(&self) -> Place;
    fn location(&self) -> String;
}

impl EscrowPlace for str {
    fn escrow_place(&self) -> Place {
        octobackup_repo::local_folder(self).map_or(Place::Unknown, Place::Local)
    }
    fn location(&self) -> String {
        self.to_string()
    }
}

impl EscrowPlace for String {
    fn escrow_place(&self) -> Place {
        self.as_str().escrow_place()
    }
    fn location(&self) -> String {
        self.clone()
    }
}

impl EscrowPlace for Storage {
    fn escrow_place(&self) -> Place {
        match self.local_folder() {
            Some(folder) => Place::Local(folder),
            None => Place::Remote(self.clone()),
        }
    }
    fn location(&self) -> String {
        self.location().to_string()
    }
}

impl EscrowPlace for Repo {
    fn escrow_place(&self) -> Place {
        self.storage().escrow_place()
    }
    fn location(&self) -> String {
        self.location().to_string()
    }
}

impl EscrowPlace for crate::config::RepositoryConfig {
    fn escrow_place(&self) -> Place {
        Storage::new(&self.location, self.options.clone()).escrow_place()
    }
    fn location(&self) -> String {
        self.location.clone()
    }
}

fn remote_failure(e: octobackup_repo::RepoError) -> Failure {
    e.into()
}

fn remote_dir(set_id: &str) -> Result<String, Failure> {
    check_set_id(set_id)?;
    Ok(format!("{OUTSIDE_DIR}/{set_id}"))
}

pub use crate::config::EscrowConfig;

/// The configured recipients (none when there is no `[escrow]` section).
pub fn recipients(config: &crate::config::Config) -> Vec<String> {
    config
        .escrow
        .as_ref()
        .map(|e| e.age_recipients.clone())
        .unwrap_or_default()
}

fn usage(msg: String) -> Failure {
    Failure::new(Exit::Usage, msg)
}

/// Parses the recipients, naming a bad one.
pub fn parse_recipients(recipients: &[String]) -> Result<Vec<age::x25519::Recipient>, Failure> {
    recipients
        .iter()
        .map(|r| {
            r.trim().parse::<age::x25519::Recipient>().map_err(|e| {
                usage(format!(
                    "escrow.age_recipients: '{r}' is not an age public key ({e}). Give keys like age1... as `age-keygen -y IDENTITY_FILE` prints them."
                ))
            })
        })
        .collect()
}

/// Encrypts `plain` to every recipient, ASCII-armored.
fn seal(recipients: &[age::x25519::Recipient], plain: &[u8]) -> Result<Vec<u8>, Failure> {
    let fail = |e: &dyn std::fmt::Display| {
        Failure::new(Exit::Failed, format!("cannot seal to the escrow keys: {e}"))
    };
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| fail(&e))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| fail(&e))?;
    let mut w = encryptor.wrap_output(armor).map_err(|e| fail(&e))?;
    w.write_all(plain).map_err(|e| fail(&e))?;
    w.finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| fail(&e))?;
    Ok(out)
}

/// The set's escrow files (`/octobackup/escrow/master-key.age`, and `license.xml.age` when there
/// is a license), sealed to `recipients`. Empty when there are no recipients. The integrator adds
/// them to the set's items and hands them to [`publish`] once the set is complete.
pub fn sealed_items(
    recipients: &[String],
    master_key: &Secret,
    license: Option<&Secret>,
) -> Result<Vec<SourceItem>, Failure> {
    if recipients.is_empty() {
        return Ok(Vec::new());
    }
    let parsed = parse_recipients(recipients)?;
    let mut items = vec![SourceItem::Memory {
        target: MASTER_KEY_SEALED.into(),
        bytes: Zeroizing::new(seal(&parsed, master_key.expose().as_bytes())?),
        mode: 0o600,
    }];
    if let Some(l) = license.filter(|l| !l.is_empty()) {
        items.push(SourceItem::Memory {
            target: LICENSE_SEALED.into(),
            bytes: Zeroizing::new(seal(&parsed, l.expose().as_bytes())?),
            mode: 0o600,
        });
    }
    Ok(items)
}

fn set_dir(repo: &Path, set_id: &str) -> Result<PathBuf, Failure> {
    check_set_id(set_id)?;
    Ok(repo.join(OUTSIDE_DIR).join(set_id))
}

fn check_set_id(set_id: &str) -> Result<(), Failure> {
    if set_id.is_empty()
        || !set_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(usage(format!("'{set_id}' is not a set id")));
    }
    Ok(())
}

/// The escrow file name of a sealed item (`master-key.age`), if it is one.
fn item_name(item: &SourceItem) -> Option<(&str, &[u8])> {
    let SourceItem::Memory { target, bytes, .. } = item else {
        return None;
    };
    let name = target
        .strip_prefix(ESCROW_DIR)
        .map(|n| n.trim_start_matches('/'))?;
    Some((name, &bytes[..]))
}

/// Writes the sealed items as plain files beside the repository's own folders
/// (`<repository>/octobackup-escrow/<set-id>/`), locally each through a temp file and a rename,
/// remotely as objects (each written whole). Returns where, or `None` when there was nothing to
/// write or the backend is not known (the sealed files are then only in the set).
pub fn publish(
    repository: &(impl EscrowPlace + ?Sized),
    set_id: &str,
    items: &[SourceItem],
) -> Result<Option<PathBuf>, Failure> {
    if items.is_empty() {
        return Ok(None);
    }
    let repo = match repository.escrow_place() {
        Place::Local(folder) => folder,
        Place::Unknown => return Ok(None),
        Place::Remote(storage) => {
            let dir = remote_dir(set_id)?;
            for (name, bytes) in items.iter().filter_map(item_name) {
                storage
                    .put(&format!("{dir}/{name}"), bytes.to_vec())
                    .map_err(remote_failure)?;
            }
            return Ok(Some(PathBuf::from(dir)));
        }
    };
    let dir = set_dir(&repo, set_id)?;
    let io = |what: &Path, e: std::io::Error| {
        Failure::new(
            Exit::Repository,
            format!(
                "cannot write the escrow copy {}: {e}. Check that the repository folder is writable.",
                what.display()
            ),
        )
    };
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    for (name, bytes) in items.iter().filter_map(item_name) {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    }
    Ok(Some(dir))
}

/// Removes a forgotten set's escrow copy (nothing to do when there is none).
pub fn remove(repository: &(impl EscrowPlace + ?Sized), set_id: &str) -> Result<(), Failure> {
    let repo = match repository.escrow_place() {
        Place::Local(folder) => folder,
        Place::Unknown => return Ok(()),
        Place::Remote(storage) => {
            return storage
                .remove_all(&remote_dir(set_id)?)
                .map_err(remote_failure);
        }
    };
    let dir = set_dir(&repo, set_id)?;
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::new(
            Exit::Repository,
            format!("cannot remove the escrow copy {}: {e}", dir.display()),
        )),
    }
}

/// Set ids with an escrow copy, oldest first (set ids sort by time).
pub fn escrowed_sets(repository: &(impl EscrowPlace + ?Sized)) -> Result<Vec<String>, Failure> {
    let repo = match repository.escrow_place() {
        Place::Local(folder) => folder,
        Place::Unknown => {
            return Err(usage(format!(
                "the backend options of {} are not known here: give the config that names the repository",
                repository.location()
            )));
        }
        Place::Remote(storage) => {
            let mut sets = storage.list(OUTSIDE_DIR).map_err(remote_failure)?;
            sets.retain(|s| check_set_id(s).is_ok());
            sets.sort();
            return Ok(sets);
        }
    };
    let dir = repo.join(OUTSIDE_DIR);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Failure::new(
                Exit::Repository,
                format!("cannot read {}: {e}", dir.display()),
            ));
        }
    };
    let mut sets: Vec<String> = rd
        .flatten()
        .filter(|e| e.path().join(MASTER_KEY_FILE).is_file())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    sets.sort();
    Ok(sets)
}

/// What `key recover` found.
pub struct Recovered {
    pub set_id: String,
    pub master_key: Secret,
    pub license: Option<Secret>,
}

/// Reads an age identity file (`age-keygen` output; comments allowed).
pub fn read_identities(path: &Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, Failure> {
    let text = Zeroizing::new(std::fs::read(path).map_err(|e| {
        usage(format!(
            "cannot read the identity file {}: {e}",
            path.display()
        ))
    })?);
    let bad = || {
        usage(format!(
            "{} is not an age identity file: it should hold a key like AGE-SECRET-KEY-1... as `age-keygen` writes it",
            path.display()
        ))
    };
    let ids = age::IdentityFile::from_buffer(&text[..])
        .map_err(|_| bad())?
        .into_identities()
        .map_err(|_| bad())?;
    if ids.is_empty() {
        return Err(bad());
    }
    Ok(ids)
}

fn open_sealed(
    sealed: &[u8],
    identities: &[Box<dyn age::Identity + Send + Sync>],
    identity_path: &Path,
    what: &str,
) -> Result<Secret, Failure> {
    let decryptor =
        age::Decryptor::new_buffered(age::armor::ArmoredReader::new(sealed)).map_err(|e| {
            Failure::new(
                Exit::CheckFailed,
                format!("the escrowed {what} is damaged or not an age file: {e}"),
            )
        })?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => usage(format!(
                "the identity in {} cannot open this set's escrow: the set was sealed to other age keys. Use the identity whose public key (age-keygen -y) was in escrow.age_recipients when the set was made.",
                identity_path.display()
            )),
            other => Failure::new(
                Exit::CheckFailed,
                format!("the escrowed {what} cannot be decrypted: {other}"),
            ),
        })?;
    let mut plain = Zeroizing::new(Vec::new());
    reader.read_to_end(&mut plain).map_err(|e| {
        Failure::new(
            Exit::CheckFailed,
            format!("the escrowed {what} is damaged: {e}"),
        )
    })?;
    let text = String::from_utf8(plain.to_vec()).map_err(|_| {
        Failure::new(
            Exit::CheckFailed,
            format!("the escrowed {what} is not text"),
        )
    })?;
    Ok(Secret::new(text))
}

/// Opens a set's escrow copy with an age identity file, without the repository password.
/// `set` is a set id or its start; `None` takes the newest set that has one.
pub fn recover(
    repository: &(impl EscrowPlace + ?Sized),
    set: Option<&str>,
    identity_path: &Path,
) -> Result<Recovered, Failure> {
    let repository_location = repository.location();
    let identities = read_identities(identity_path)?;
    let sets = escrowed_sets(repository)?;
    let set_id = match set {
        None => sets.last().cloned().ok_or_else(|| {
            usage(format!(
                "the repository {repository_location} holds no escrow copies: sets are sealed only when [escrow] age_recipients is set in the config"
            ))
        })?,
        Some(want) => {
            let matching: Vec<&String> = sets.iter().filter(|s| s.starts_with(want)).collect();
            match matching.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(usage(format!(
                        "no escrow copy for set '{want}' in {repository_location} (sets with one: {})",
                        if sets.is_empty() {
                            "none".to_string()
                        } else {
                            sets.join(", ")
                        }
                    )));
                }
                more => {
                    return Err(usage(format!(
                        "set id '{want}' is ambiguous ({} sets start with it): give more characters",
                        more.len()
                    )));
                }
            }
        }
    };
    let place = repository.escrow_place();
    let read = |name: &str| -> Result<Option<Vec<u8>>, Failure> {
        let repo = match &place {
            Place::Remote(storage) => {
                return storage
                    .get(&format!("{}/{name}", remote_dir(&set_id)?))
                    .map_err(remote_failure);
            }
            Place::Local(folder) => folder,
            Place::Unknown => unreachable!("escrowed_sets refuses it"),
        };
        let p = set_dir(repo, &set_id)?.join(name);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Failure::new(
                Exit::Repository,
                format!("cannot read {}: {e}", p.display()),
            )),
        }
    };
    let sealed_key = read(MASTER_KEY_FILE)?.ok_or_else(|| {
        Failure::new(
            Exit::Repository,
            format!("the escrow copy of set {set_id} has no master key"),
        )
    })?;
    let master_key = open_sealed(&sealed_key, &identities, identity_path, "master key")?;
    let license = match read(LICENSE_FILE)? {
        Some(b) => Some(open_sealed(&b, &identities, identity_path, "license")?),
        None => None,
    };
    Ok(Recovered {
        set_id,
        master_key,
        license,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn identity_file(dir: &Path, id: &age::x25519::Identity) -> PathBuf {
        let p = dir.join("identity.txt");
        std::fs::write(
            &p,
            format!(
                "# created: test\n# public key: {}\n{}\n",
                id.to_public(),
                id.to_string().expose_secret()
            ),
        )
        .unwrap();
        p
    }

    #[test]
    fn sealed_secrets_open_with_the_identity_and_only_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let alice = age::x25519::Identity::generate();
        let bob = age::x25519::Identity::generate();
        let key = Secret::new("Cg8KDw8KDw8KDw8KDw8KDw==");
        let license = Secret::new("<License>x</License>");
        let items = sealed_items(
            &[alice.to_public().to_string(), bob.to_public().to_string()],
            &key,
            Some(&license),
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        for item in &items {
            let SourceItem::Memory { bytes, .. } = item else {
                panic!()
            };
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
            assert!(!text.contains(key.expose()));
        }
        let loc = repo.to_str().unwrap();
        publish(loc, "20260101T000000Z-abc123", &items).unwrap();
        let id_path = identity_file(dir.path(), &bob);
        let r = recover(loc, None, &id_path).unwrap();
        assert_eq!(r.set_id, "20260101T000000Z-abc123");
        assert_eq!(r.master_key.expose(), key.expose());
        assert_eq!(r.license.unwrap().expose(), license.expose());

        let eve = age::x25519::Identity::generate();
        let eve_path = dir.path().join("eve.txt");
        std::fs::write(&eve_path, eve.to_string().expose_secret()).unwrap();
        let e = recover(loc, Some("2026"), &eve_path).err().unwrap();
        assert!(matches!(e.cause, crate::error::Cause::Plain(Exit::Usage)));
        assert!(e.message.contains("cannot open this set's escrow"), "{e}");

        remove(loc, "20260101T000000Z-abc123").unwrap();
        assert!(escrowed_sets(loc).unwrap().is_empty());
    }

    #[test]
    fn bad_recipients_and_identities_are_named() {
        let e = sealed_items(&["age1nope".into()], &Secret::new("k"), None)
            .err()
            .unwrap();
        assert!(
            e.message.contains("'age1nope' is not an age public key"),
            "{e}"
        );
        assert!(
            sealed_items(&[], &Secret::new("k"), None)
                .unwrap()
                .is_empty()
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("id");
        std::fs::write(&p, "not a key\n").unwrap();
        let e = read_identities(&p).err().unwrap();
        assert!(e.message.contains("is not an age identity file"), "{e}");
    }
}
