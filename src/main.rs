//! The `lookout` binary: flags and config in, crates wired together.
//!
//! * `config`: YAML config -> validated [`config::Config`] (defaults < file < env < flags).
//! * `server`: `lookout serve`: listeners, store, scraping, graceful shutdown.
//! * `auth`: bearer-token middleware (HTTP) and interceptor (gRPC).
//! * `telemetry`: `GET /metrics`.

mod auth;
mod config;
mod diskwatch;
mod login;
mod server;
mod telemetry;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::config::{Overrides, Secret};

/// Ingest allocates and frees many small label strings per request; mimalloc's thread-local
/// free lists make that markedly cheaper than glibc's malloc (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "lookout",
    version,
    about = "One program for metrics, logs, traces, alerting and dashboards",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run Lookout: ingest, storage, query APIs and UI in one process.
    Serve(ServeArgs),
    /// Validate a config file, its rule files and dashboard files; print every error, exit 1 if any.
    CheckConfig {
        /// The YAML config file to check.
        file: PathBuf,
    },
    /// Unit tests, as promtool's.
    #[command(subcommand)]
    Test(TestCommand),
}

#[derive(Subcommand, Debug)]
enum TestCommand {
    /// Run `promtool test rules` unit-test files against Lookout's rule evaluator.
    Rules {
        /// Unit-test files (promtool's format).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// YAML config file; without one Lookout runs on built-in defaults.
    #[arg(long, env = "LOOKOUT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (overrides storage.data_dir and LOOKOUT_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP listen address: UI, query APIs, remote-write, /metrics [default: 127.0.0.1:9800].
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<String>,
    /// OTLP gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, value_name = "ADDR")]
    otlp_grpc_addr: Option<String>,
    /// OTLP HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long, value_name = "ADDR")]
    otlp_http_addr: Option<String>,
    /// Log filter: a level (error, warn, info, debug, trace) or a tracing filter such as
    /// `info,store=debug` [default: RUST_LOG, else info].
    #[arg(long, env = "LOOKOUT_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log format.
    #[arg(long, env = "LOOKOUT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Standard error for the logs, dropping what cannot be written. When stderr is a file on
/// a full disk, the fmt layer would otherwise report the failed write with `eprintln!`,
/// which panics: a log line from the WAL's writer thread would kill the thread, and every
/// later write would wait for it forever.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn init_tracing(level: Option<&str>, format: LogFormat) -> Result<(), String> {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).map_err(|e| format!("invalid --log-level {l:?}: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // colours only for a terminal, so piped logs stay greppable
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(|| LossyStderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("initialising logging: {e}"))
}

fn serve(args: ServeArgs) -> ExitCode {
    if let Err(e) = init_tracing(args.log_level.as_deref(), args.log_format) {
        eprintln!("lookout: {e}");
        return ExitCode::from(2);
    }
    let env = Overrides::from_env(|k| std::env::var(k).ok());
    let flags = Overrides {
        data_dir: args.data_dir,
        http_addr: args.http_addr,
        otlp_grpc_addr: args.otlp_grpc_addr,
        otlp_http_addr: args.otlp_http_addr,
        ingest_tokens: None::<Vec<Secret>>,
        query_tokens: None,
    };
    let overrides = env.then(flags);
    let config = match config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}", errors.render());
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %args.config.as_deref().map_or("<defaults>".into(), |p| p.display().to_string()),
        data_dir = %config.storage.data_dir.display(),
        ingest_auth = !config.server.ingest_tokens.is_empty(),
        query_auth = !config.server.query_tokens.is_empty(),
        "starting lookout"
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let source = server::ConfigSource {
        path: args.config.clone(),
        overrides,
    };
    match runtime.block_on(server::run(config, source)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "lookout stopped with an error");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &Path) -> ExitCode {
    match config::load(Some(file), &Overrides::default()) {
        Ok(config) => {
            // dashboards are checked here, not when loading the config: serving keeps going
            // (and reloading) with a broken dashboard file, only logging it
            let errors = config::dashboard_errors(&config);
            if !errors.is_empty() {
                let errors = config::ConfigErrors {
                    file: Some(file.to_path_buf()),
                    errors,
                };
                eprintln!("{}", errors.render());
                return ExitCode::FAILURE;
            }
            println!("{}: config is valid", file.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}", errors.render());
            ExitCode::FAILURE
        }
    }
}

/// `lookout test rules`: promtool's output, file by file; exit 1 when any test failed.
fn test_rules(files: &[PathBuf]) -> ExitCode {
    let mut passed = true;
    for file in files {
        // the report is promtool's output for the file: the `Unit Testing:  FILE` heading,
        // then SUCCESS or FAILED with details; a blank line separates files, as promtool's
        let report = alerter::rules::unittest::run_test_file(file);
        let text = report.output.trim_end_matches('\n');
        println!("{text}\n");
        passed &= report.passed;
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Test(TestCommand::Rules { files }) => test_rules(&files),
    }
}
