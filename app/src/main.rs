//! The `veil` binary; everything lives in the `veil_app` library.

fn main() -> std::process::ExitCode {
    veil_app::main()
}
