//! dnsensor's entry point: parses the command line, sets up logging, and runs the chosen mode.
//! Each mode wires one source to the shared pipeline and prints a one-line summary on exit.

mod check_config;
mod cli;
mod config;
mod logging;
mod metrics;
mod mode_capture;
mod mode_collector;
mod mode_dnstap;
mod mode_docs;
mod mode_proxy;
mod mode_tools;
mod outlet;
mod privileges;
mod reload;
mod service;
mod signals;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    return ExitCode::SUCCESS;
                }
                // No subcommand is a usage error: help goes to stderr, and the exit says so.
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    return ExitCode::from(2);
                }
                _ => {}
            }
            eprintln!("dnsensor: error: {} (see dnsensor --help)", one_line(&e));
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Dnstap(args) => mode_dnstap::main(*args),
        Command::Capture(args) => mode_capture::main(*args),
        Command::Proxy(args) => mode_proxy::main(*args),
        Command::Keygen(args) => mode_tools::keygen(args),
        Command::Inspect(args) => mode_tools::inspect(args),
        Command::Collector(args) => mode_collector::main(args),
        Command::GenerateDocs(args) => mode_docs::main(args),
        Command::CheckConfig(args) => {
            let problems = check_config::check_file(&args.config);
            if problems.is_empty() {
                println!("{}: ok", args.config.display());
                return ExitCode::SUCCESS;
            }
            for e in problems {
                eprintln!("dnsensor: error: {e}");
            }
            ExitCode::from(2)
        }
    }
}

/// A start-up error: one line on stderr and the exit code, 2 for configuration and usage, 1
/// when the system refuses something (a file, a socket, an interface, a user).
pub(crate) fn fail(code: u8, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("dnsensor: error: {e}");
    ExitCode::from(code)
}

/// clap's message spans several lines (the error, the missing arguments, usage); operators and
/// scripts get one: everything before "Usage:", joined.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.trim_start_matches("error: "));
        }
    }
    if parts.is_empty() {
        "invalid arguments".into()
    } else {
        parts.join(" ")
    }
}
