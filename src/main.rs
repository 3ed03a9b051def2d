//! The `credits` binary: parse the command line, load settings, start logging, dispatch.

use std::process::ExitCode;

use clap::Parser as _;
use credits::{
    cli::{self, Cli, CliError},
    config::Settings,
    telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            // One line naming the flag, like a bad variable; `--help` shows the rest.
            let rendered = err.to_string();
            let first = rendered.lines().next().unwrap_or_default();
            eprintln!("credits: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("credits: {err}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = match telemetry::init(settings.log_format, &settings.log_filter, &settings.telemetry) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("credits: {err}");
            return ExitCode::from(2);
        }
    };
    match cli::run(cli, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(err)) => {
            eprintln!("credits: {err}");
            ExitCode::from(2)
        }
        Err(CliError::Config(err)) => {
            eprintln!("credits: {err}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(err)) => {
            eprintln!("credits: {err:#}");
            ExitCode::FAILURE
        }
    }
}
