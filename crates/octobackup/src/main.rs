fn main() -> std::process::ExitCode {
    // Before any thread starts (issue 13: glibc's per-thread arenas doubled a backup's memory).
    octobackup_repo::tune_allocator();
    octobackup::cli::main()
}
