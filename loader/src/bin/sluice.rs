fn main() -> std::process::ExitCode {
    sluice_loader::cli::main()
}
