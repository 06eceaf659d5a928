//! # veil-app
//!
//! The veil reference app: the `veil` binary.
//!
//! * `veil daemon` runs a [`Node`](veil_actors::Node) from a home directory
//!   and serves the **daemon API** — gRPC on the Unix socket
//!   `<home>/veil.sock` (mode 0600), schema `proto/schemas/veil/v1/daemon.proto`,
//!   documented in `docs/APP.md`. The CLI, the TUI and custom messengers in
//!   any language use only this API.
//! * The CLI (`veil init|id|link|contact|send|log|group|status|policy|transport|…`)
//!   prints one JSON document per result with `--json`.
//! * `veil chat` is the terminal UI; `veil demo` runs a few nodes on
//!   loopback in one process and opens it.
//!
//! Rust programs can embed a daemon and talk to it through the same API:
//!
//! ```
//! use veil_app::{api, client, config::Settings, daemon::Daemon};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> anyhow::Result<()> {
//! let home = tempfile::tempdir()?;
//! let settings = Settings { listen: vec![], mdns: false, ..Settings::default() };
//! let daemon = Daemon::start(home.path(), settings).await?;
//!
//! let mut api = client::connect(daemon.socket()).await?;
//! let link = api.get_link(api::GetLinkRequest {}).await?.into_inner();
//! assert!(link.uri.starts_with("veil://contact/"));
//! let notes = api.create_group(api::CreateGroupRequest { name: "notes".into() }).await?.into_inner();
//! let sent = api.send(api::SendRequest { conversation: notes.id.clone(), body: b"hello".to_vec() }).await?;
//! assert!(sent.into_inner().message.is_some_and(|m| m.mine));
//!
//! daemon.shutdown().await?;
//! # Ok(())
//! # }
//! ```

pub mod api;
mod cli;
pub mod client;
mod commands;
pub mod config;
pub mod daemon;
mod demo;
mod devices;
mod output;
mod qr;
mod tui;

use std::process::ExitCode;

use clap::Parser;

pub use commands::ApiError;

/// Exit code: the command failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: bad usage or input (clap's usage errors use it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: no daemon is running for the home.
pub const EXIT_NO_DAEMON: u8 = 3;
/// Exit code: the conversation or contact is unknown.
pub const EXIT_NOT_FOUND: u8 = 4;
/// Exit code: not supported yet.
pub const EXIT_UNSUPPORTED: u8 = 5;

/// The `veil` binary: parses the command line, runs the command, and on
/// failure prints one line (and, with `--json`, an error document) and
/// returns a non-zero exit code.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let json = cli.json;
    init_tracing(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(json, &anyhow::Error::new(e).context("cannot start the runtime")),
    };
    let result = runtime.block_on(commands::run(cli));
    // Tasks still running (an event stream, a TUI input thread) must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(json, &e),
    }
}

fn fail(json: bool, e: &anyhow::Error) -> ExitCode {
    use std::io::Write;
    // The reader went away (`veil status | head`): nothing more to say.
    if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
        return ExitCode::SUCCESS;
    }
    let (code, kind) = classify(e);
    let message = format!("{e:#}").replace('\n', " ");
    if json {
        let doc = serde_json::json!({ "error": { "code": kind, "message": message } });
        let _ = writeln!(std::io::stdout(), "{doc}");
    }
    let _ = writeln!(std::io::stderr(), "veil: error: {message}");
    ExitCode::from(code)
}

/// The exit code and the stable error code name of an error.
fn classify(e: &anyhow::Error) -> (u8, &'static str) {
    if e.downcast_ref::<client::NoDaemon>().is_some() {
        return (EXIT_NO_DAEMON, "no_daemon");
    }
    match e.downcast_ref::<ApiError>().map(|a| a.code) {
        Some(tonic::Code::InvalidArgument) => (EXIT_USAGE, "invalid_argument"),
        Some(tonic::Code::NotFound) => (EXIT_NOT_FOUND, "not_found"),
        Some(tonic::Code::Unimplemented) => (EXIT_UNSUPPORTED, "unsupported"),
        Some(tonic::Code::FailedPrecondition) => (EXIT_FAILURE, "refused"),
        Some(tonic::Code::Unavailable) => (EXIT_FAILURE, "unavailable"),
        Some(tonic::Code::AlreadyExists) => (EXIT_FAILURE, "already_exists"),
        Some(tonic::Code::DeadlineExceeded) => (EXIT_FAILURE, "timed_out"),
        Some(tonic::Code::DataLoss) => (EXIT_FAILURE, "damaged"),
        Some(tonic::Code::Internal) => (EXIT_FAILURE, "internal"),
        Some(_) => (EXIT_FAILURE, "failed"),
        None => (EXIT_FAILURE, "failed"),
    }
}

/// Logs go to standard error: `info` for the daemon, warnings otherwise,
/// nothing while a full-screen UI owns the terminal. `VEIL_LOG` overrides
/// (tracing's filter syntax). libp2p's crates log at `warn` unless asked:
/// their INFO lines name the local peer id and observed or discovered
/// addresses, which veil's own logs keep to `debug`.
fn init_tracing(command: &cli::Command) {
    let default = match command {
        cli::Command::Daemon(_) => "info,libp2p=warn",
        cli::Command::Chat | cli::Command::Demo { script: false } => return,
        // A showcase: only errors, unless asked.
        cli::Command::Demo { script: true } => "error",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("VEIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}
