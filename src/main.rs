//! The `pgretain` command line: parse arguments, call the library, map the
//! outcome to an exit code (SPEC §5). Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pgretain::exit;

#[derive(Parser)]
#[command(
    name = "pgretain",
    version,
    about = "Compile YAML data-retention policies into PostgreSQL partitioning, enforcement procedures and pg_cron jobs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the policy (exit 0 valid, 2 invalid).
    Check {
        /// The policy directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Print the policy language as JSON Schema, for editors.
    Schema,
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return code(if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            });
        }
    };
    match cli.command {
        Command::Check { dir } => match pgretain::check(&dir) {
            Ok(summary) => {
                println!("{summary}");
                code(exit::OK)
            }
            Err(diags) => {
                eprintln!("{diags}");
                code(exit::INVALID)
            }
        },
        Command::Schema => {
            print!("{}", pgretain::schema());
            code(exit::OK)
        }
    }
}
