//! The one way async code reaches blocking work, the repository first of all: its calls wait on
//! its own helper thread, and made straight from async code they would stall a runtime worker
//! (and with it the window's clock). A task that panicked or was cancelled comes back as a
//! `Failure` (exit 1) that says what was being done, its `JoinError` kept as the cause: never
//! dropped, never a default value in place of an answer.

use crate::error::Failure;

/// Runs `f` on tokio's blocking threads; `what` names the work in the error ("the folder backup").
pub async fn blocking<T, F>(what: &str, f: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        let f = Failure::from(e);
        Failure {
            message: format!("{what} stopped: {}", f.message),
            ..f
        }
    })
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_panic_is_a_failure_that_names_the_work() {
        assert_eq!(super::blocking("adding", || 2 + 2).await.unwrap(), 4);
        let f = super::blocking("the folder backup", || -> u32 { panic!("boom") })
            .await
            .unwrap_err();
        assert!(
            f.message.starts_with("the folder backup stopped: "),
            "{}",
            f.message
        );
        assert!(
            f.typed_cause()
                .is_some_and(|c| c.is::<tokio::task::JoinError>())
        );
    }
}
