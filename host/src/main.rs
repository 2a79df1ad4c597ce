//! The `moat` command. Everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    moat::cli::main()
}
