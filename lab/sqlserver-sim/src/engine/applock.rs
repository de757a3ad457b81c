//! Application locks: sp_getapplock and sp_releaseapplock (Microsoft Learn, "sp_getapplock
//! (Transact-SQL)" and "sp_releaseapplock (Transact-SQL)").
//!
//! A lock is named by the session's current database, the database principal and the resource
//! (compared as binary, so case-sensitive, truncated to 255 characters). It is owned by the
//! session or by its transaction; a transaction's locks go at COMMIT/ROLLBACK, a session's when
//! it logs out or its connection drops. Each grant is counted: a lock taken twice by the same
//! owner must be released twice. Deadlock detection (return code -3) is not modelled: a waiter
//! waits until its timeout or an ATTENTION.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::errors::SqlError;
use super::lock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Update,
    IntentShared,
    IntentExclusive,
    Exclusive,
}

impl LockMode {
    /// The @LockMode values, matched without regard to case as SQL Server does.
    pub fn parse(text: &str) -> Option<Self> {
        [
            ("Shared", LockMode::Shared),
            ("Update", LockMode::Update),
            ("IntentShared", LockMode::IntentShared),
            ("IntentExclusive", LockMode::IntentExclusive),
            ("Exclusive", LockMode::Exclusive),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text.trim()))
        .map(|(_, mode)| mode)
    }

    /// Lock compatibility (Microsoft Learn, "Transaction locking and row versioning guide",
    /// lock compatibility): IS, S, U, IX and X against each other.
    pub fn compatible(self, other: LockMode) -> bool {
        use LockMode::*;
        match (self, other) {
            (Exclusive, _) | (_, Exclusive) => false,
            (IntentShared, _) | (_, IntentShared) => true,
            (Shared, Shared) | (Shared, Update) | (Update, Shared) => true,
            (IntentExclusive, IntentExclusive) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOwner {
    Transaction,
    Session,
}

impl LockOwner {
    pub fn parse(text: &str) -> Option<Self> {
        if text.trim().eq_ignore_ascii_case("Transaction") {
            Some(LockOwner::Transaction)
        } else if text.trim().eq_ignore_ascii_case("Session") {
            Some(LockOwner::Session)
        } else {
            None
        }
    }
}

/// What names a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockKey {
    pub database_id: i32,
    pub principal: String,
    pub resource: String,
}

impl LockKey {
    pub fn new(database_id: i32, principal: &str, resource: &str) -> Self {
        Self {
            database_id,
            principal: principal.to_lowercase(),
            resource: resource.chars().take(255).collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Grant {
    key: LockKey,
    spid: u16,
    owner: LockOwner,
    mode: LockMode,
    count: u32,
}

/// How sp_getapplock ended; the values are its return codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    Granted = 0,
    GrantedAfterWait = 1,
    TimedOut = -1,
    Cancelled = -2,
}

/// Every application lock of the server.
#[derive(Default)]
pub struct AppLocks {
    grants: Mutex<Vec<Grant>>,
    released: Notify,
}

impl AppLocks {
    /// Grants the lock now if no other session holds an incompatible one.
    fn try_grant(&self, key: &LockKey, spid: u16, owner: LockOwner, mode: LockMode) -> bool {
        let mut grants = lock(&self.grants);
        // The same session's own locks never block it (SQL Server converts them).
        let blocked = grants
            .iter()
            .any(|g| g.key == *key && g.spid != spid && !g.mode.compatible(mode));
        if blocked {
            return false;
        }
        match grants
            .iter_mut()
            .find(|g| g.key == *key && g.spid == spid && g.owner == owner && g.mode == mode)
        {
            Some(g) => g.count += 1,
            None => grants.push(Grant {
                key: key.clone(),
                spid,
                owner,
                mode,
                count: 1,
            }),
        }
        true
    }

    /// sp_getapplock: `timeout_ms` 0 fails at once, -1 waits for ever; `cancelled` ends a wait
    /// (the client's ATTENTION or disconnection).
    pub async fn acquire(
        &self,
        key: &LockKey,
        spid: u16,
        owner: LockOwner,
        mode: LockMode,
        timeout_ms: i64,
        cancelled: impl Fn() -> bool,
    ) -> Acquired {
        if self.try_grant(key, spid, owner, mode) {
            return Acquired::Granted;
        }
        let deadline = (timeout_ms >= 0)
            .then(|| Instant::now() + Duration::from_millis(timeout_ms.unsigned_abs()));
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Acquired::TimedOut;
            }
            if cancelled() {
                return Acquired::Cancelled;
            }
            // A short sleep bounds the wait for an ATTENTION, which does not wake this notify.
            let _ = tokio::time::timeout(Duration::from_millis(20), self.released.notified()).await;
            if self.try_grant(key, spid, owner, mode) {
                return Acquired::GrantedAfterWait;
            }
        }
    }

    /// sp_releaseapplock: releases one grant of the session's lock on `key` held by `owner`.
    pub fn release(&self, key: &LockKey, spid: u16, owner: LockOwner) -> Result<(), SqlError> {
        let mut grants = lock(&self.grants);
        let Some(index) = grants
            .iter()
            .position(|g| g.key == *key && g.spid == spid && g.owner == owner)
        else {
            return Err(not_held(key));
        };
        grants[index].count -= 1;
        if grants[index].count == 0 {
            grants.remove(index);
        }
        drop(grants);
        self.released.notify_waiters();
        Ok(())
    }

    /// Releases every lock `spid` holds as `owner` (the end of its transaction), or every lock
    /// it holds at all (`None`: the session ended).
    pub fn release_all(&self, spid: u16, owner: Option<LockOwner>) {
        lock(&self.grants).retain(|g| g.spid != spid || owner.is_some_and(|o| o != g.owner));
        self.released.notify_waiters();
    }
}

/// Msg 1223 (sp_releaseapplock on a lock the caller does not hold).
fn not_held(key: &LockKey) -> SqlError {
    SqlError::new(
        1223,
        16,
        1,
        format!(
            "Cannot release the application lock (Database Principal: '{}', Resource: '{}') because it is not currently held.",
            key.principal, key.resource
        ),
    )
}

/// Msg 15626, severity 10: sp_getapplock with @LockOwner = 'Transaction' outside a
/// transaction. The procedure then returns -999.
pub fn no_transaction() -> SqlError {
    SqlError::new(
        15626,
        10,
        1,
        "You attempted to acquire a transactional application lock without an active transaction.",
    )
}

/// Msg 15625, severity 10: a @LockMode or @LockOwner value the procedure does not know; it
/// then returns -999.
pub fn option_not_recognized(value: &str, parameter: &str) -> SqlError {
    SqlError::new(
        15625,
        10,
        1,
        format!("Option '{value}' not recognized for '{parameter}' parameter."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_follows_the_matrix() {
        use LockMode::*;
        let modes = [IntentShared, Shared, Update, IntentExclusive, Exclusive];
        // Rows and columns in the order above; true where both can be held at once.
        let expected = [
            [true, true, true, true, false],
            [true, true, true, false, false],
            [true, true, false, false, false],
            [true, false, false, true, false],
            [false, false, false, false, false],
        ];
        for (i, a) in modes.iter().enumerate() {
            for (j, b) in modes.iter().enumerate() {
                assert_eq!(a.compatible(*b), expected[i][j], "{a:?} against {b:?}");
            }
        }
    }

    #[tokio::test]
    async fn exclusive_conflicts_then_frees_on_release_and_session_end() {
        let locks = AppLocks::default();
        let key = LockKey::new(5, "public", "octobackup:Octopus");
        let take = |spid| {
            locks.acquire(
                &key,
                spid,
                LockOwner::Session,
                LockMode::Exclusive,
                0,
                || false,
            )
        };
        assert_eq!(take(51).await, Acquired::Granted);
        assert_eq!(take(52).await, Acquired::TimedOut);
        // Counted: two grants, two releases.
        assert_eq!(take(51).await, Acquired::Granted);
        locks.release(&key, 51, LockOwner::Session).unwrap();
        assert_eq!(take(52).await, Acquired::TimedOut);
        locks.release(&key, 51, LockOwner::Session).unwrap();
        assert_eq!(
            locks
                .release(&key, 51, LockOwner::Session)
                .unwrap_err()
                .number,
            1223
        );
        assert_eq!(take(52).await, Acquired::Granted);
        locks.release_all(52, None);
        assert_eq!(take(51).await, Acquired::Granted);
        // Resource names are case-sensitive: another resource.
        let other = LockKey::new(5, "public", "OCTOBACKUP:Octopus");
        assert_eq!(
            locks
                .acquire(
                    &other,
                    52,
                    LockOwner::Session,
                    LockMode::Exclusive,
                    0,
                    || false
                )
                .await,
            Acquired::Granted
        );
    }

    #[tokio::test]
    async fn a_waiter_is_granted_once_the_holder_releases() {
        let locks = std::sync::Arc::new(AppLocks::default());
        let key = LockKey::new(5, "public", "r");
        locks
            .acquire(&key, 51, LockOwner::Session, LockMode::Shared, 0, || false)
            .await;
        let waiter = {
            let (locks, key) = (locks.clone(), key.clone());
            tokio::spawn(async move {
                locks
                    .acquire(
                        &key,
                        52,
                        LockOwner::Session,
                        LockMode::Exclusive,
                        -1,
                        || false,
                    )
                    .await
            })
        };
        tokio::task::yield_now().await;
        locks.release_all(51, Some(LockOwner::Session));
        assert_eq!(waiter.await.unwrap(), Acquired::GrantedAfterWait);
        assert_eq!(
            locks
                .acquire(&key, 53, LockOwner::Session, LockMode::Shared, 0, || true)
                .await,
            Acquired::TimedOut
        );
    }
}
