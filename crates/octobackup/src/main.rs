fn main() -> std::process::ExitCode {
    octobackup::cli::main()
}
