//! The `credits` binary: parse the command line, load settings, start logging, dispatch.

use std::process::ExitCode;

use credits::{
    cli::{self, CliError},
    config::Settings,
    report::error_chain,
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
            eprintln!("credits: {}", error_chain(&err));
            return ExitCode::from(2);
        }
    };
    let _telemetry = match telemetry::init(settings.log_format, &settings.log_filter, &settings.telemetry) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("credits: {}", error_chain(&err));
            return ExitCode::from(2);
        }
    };
    let Err(err) = cli::run(cli, settings).await else {
        return ExitCode::SUCCESS;
    };
    // One line: the error, then each cause once.
    eprintln!("credits: {}", error_chain(&err));
    match err {
        CliError::Usage(_) | CliError::Config(_) | CliError::Argument(_) | CliError::Input(_) => {
            ExitCode::from(2)
        }
        CliError::Failed(_) => ExitCode::FAILURE,
    }
}
