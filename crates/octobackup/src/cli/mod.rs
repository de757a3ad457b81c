//! The command line: argument parsing, dispatch, output, and the exit codes (`exit`). Most
//! commands' logic lives in `run/` and the domain modules, and the files here wire it to the user;
//! `doctor.rs` still holds its checks.

pub(crate) mod backup;
mod check;
mod context;
mod copy;
pub(crate) mod doctor;
mod drill;
pub mod exit;
mod forget;
mod init;
mod key;
mod recover;
mod report;
pub(crate) mod repository;
mod restore;
mod schedule;
mod snapshots;
pub mod ui;

use crate::error::{Exit, Failure};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "octobackup",
    version,
    about = "Backs up and restores an Octopus Deploy server the way Octopus documents it."
)]
pub struct Cli {
    /// The config file.
    #[arg(
        long,
        short,
        global = true,
        env = "OCTOBACKUP_CONFIG",
        default_value = "octobackup.toml"
    )]
    pub config: PathBuf,
    /// Print the result as JSON on stdout (progress and notes are left out).
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr (-v: steps, -vv: every statement sent).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a repository and, if there is none, a commented config file.
    Init(init::Args),
    /// Back up an Octopus instance: maintenance mode, master key, license, database, folders.
    Backup(backup::Args),
    /// List the backup sets in the repository.
    Snapshots(snapshots::ListArgs),
    /// Show one backup set's manifest.
    Show(snapshots::ShowArgs),
    /// Restore a backup set: database, folders, master key and license, with the commands that finish the job.
    Restore(restore::Args),
    /// Test a set: restore it to a scratch database and folder, check it, prove the master key, clean up.
    Drill(drill::Args),
    /// Drop old backup sets by a retention policy (whole sets; incomplete ones first).
    Forget(forget::Args),
    /// Free the space of data no set uses any more.
    Prune(forget::PruneArgs),
    /// Check the repository (and with --read-data its data); name the sets damage hits.
    Check(check::Args),
    /// Copy the complete sets to a second repository (a [[copy]] of the config), incrementally.
    Copy(copy::Args),
    /// Repository passwords (add, list, remove) and escrow recovery of a set's master key.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Put maintenance mode back after a run that was killed.
    Recover(recover::Args),
    /// Check everything a backup needs (API and key, master key, SQL login and permission, staging,
    /// folders, repository, free space, clock), each failure with its fix; exit 8 if any fails.
    Doctor(doctor::Args),
    /// Write the report: one self-contained HTML page with the sets, their windows, sizes and
    /// drills, what would be lost if the server died now, and retention's next drops.
    Report(report::Args),
    /// Run backup and drill every night: a systemd timer (Linux) or a Task Scheduler task (Windows).
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    run_main(cli.verbose, cli.json, dispatch(cli))
}

/// Runs a command to its exit code: logging, the runtime, and the one place an error is printed.
pub(crate) fn run_main(
    verbose: u8,
    json: bool,
    command: impl std::future::Future<Output = Result<(), Failure>>,
) -> ExitCode {
    init_logging(verbose, json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(Exit::Failed as u8);
        }
    };
    let outcome = runtime.block_on(command);
    // An SFTP repository's ssh masters and their control folder go with the run.
    octobackup_repo::close_ssh_connections();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if json && !f.result_printed {
                println!("{}", exit::json(&f));
            }
            eprint!("{}", exit::render(&f, verbose));
            ExitCode::from(exit::code(&f) as u8)
        }
    }
}

fn init_logging(verbose: u8, json: bool) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = std::env::var("OCTOBACKUP_LOG").unwrap_or_else(|_| {
        // tiberius logs every INFO message at debug and each server error at error level (octobackup
        // reports those itself): keep it for -vvv.
        if verbose >= 3 {
            "debug".into()
        } else {
            // The storage backend's own context (URIs, headers, request ids) is for -v: without
            // it an error is octobackup's one line with the cause and the fix.
            let storage = if verbose >= 1 { "warn" } else { "off" };
            format!(
                "{level},tiberius=off,rustic_core=warn,opendal={storage},rustic_backend={storage},octobackup_repo::storage={storage}"
            )
        }
    });
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(!json && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
    // rustic_core reports some problems only through `log`: route them to tracing, through the
    // repository crate's wrapper that also captures the ones a backup must know about.
    if log::set_boxed_logger(octobackup_repo::wrap_logger(Box::new(
        tracing_log::LogTracer::new(),
    )))
    .is_ok()
    {
        log::set_max_level(if verbose >= 2 {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        });
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let ui = ui::Ui::new(cli.json);
    match cli.command {
        Command::Init(a) => init::run(&cli.config, a, cli.json, &ui).await,
        Command::Backup(a) => backup::run(&cli.config, a, cli.json, &ui).await,
        Command::Snapshots(a) => snapshots::list(&cli.config, a, cli.json).await,
        Command::Show(a) => snapshots::show(&cli.config, a, cli.json).await,
        Command::Restore(a) => restore::run(&cli.config, a, cli.json, &ui).await,
        Command::Drill(a) => drill::run(&cli.config, a, cli.json, &ui).await,
        Command::Forget(a) => forget::run(&cli.config, a, cli.json).await,
        Command::Prune(a) => forget::prune(&cli.config, a, cli.json).await,
        Command::Check(a) => check::run(&cli.config, a, cli.json).await,
        Command::Copy(a) => copy::run(&cli.config, a, cli.json, &ui).await,
        Command::Key(c) => key::run(&cli.config, c, cli.json).await,
        Command::Recover(a) => recover::run(&cli.config, a, cli.json).await,
        Command::Doctor(a) => doctor::run(&cli.config, a, cli.json).await,
        Command::Report(a) => report::run(&cli.config, a, cli.json).await,
        Command::Schedule(c) => schedule::run(&cli.config, c, cli.json, &ui).await,
    }
}

/// Prints a result: JSON on stdout with --json, else the human text.
pub(crate) fn emit<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("serializable")
        );
    } else {
        print!("{}", human());
    }
}

pub(crate) fn usage(msg: impl Into<String>) -> Failure {
    Failure::new(Exit::Usage, msg)
}
