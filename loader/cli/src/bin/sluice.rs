fn main() -> std::process::ExitCode {
    sluice_cli::cli::main()
}
