fn main() -> std::process::ExitCode {
    octobackup::lab::main()
}
