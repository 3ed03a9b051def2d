//! The `credits` binary: parse the command line, load settings, start logging, dispatch.

use std::process::ExitCode;

use credits::{
    cli::{self, CliError},
    config::Settings,
    telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
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
        Err(CliError::Argument(err)) => {
            eprintln!("credits: {err}");
            ExitCode::from(2)
        }
        Err(CliError::Input(err)) => {
            eprintln!("credits: {err}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(err)) => {
            eprintln!("credits: {err:#}");
            ExitCode::FAILURE
        }
    }
}
