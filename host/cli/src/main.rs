//! The `cloudfn` binary: parses the command line and runs it on a tokio runtime.

use clap::Parser;

/// mimalloc rather than glibc's malloc: a call allocates and frees on several threads (HTTP
/// workers, guest threads, the record writer), where glibc's arenas lock and consolidate;
/// mimalloc took 10-17 % off a call's CPU (docs/performance.md, issue 30's second round).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cloudfn_cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLOUDFN_LOG").unwrap_or_else(|_| {
        let default = match cli.command {
            cloudfn_cli::Command::Serve(_) => "info",
            _ => "warn",
        };
        tracing_subscriber::EnvFilter::new(default)
    });
    // Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt()
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        cloudfn_cli::LogFormat::Json => logs.json().init(),
        cloudfn_cli::LogFormat::Text => logs.init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(cloudfn_cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
