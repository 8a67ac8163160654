//! The `pgretain` command line: parse arguments, call the library's
//! command, and [`finish`]: print its outcome or its error and pick the
//! exit code (SPEC §5). Nothing else lives here.

use std::convert::Infallible;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pgretain::cmd::{self, exit, Failure, Outcome};

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
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Write new migrations to the generated directory, or check they are current.
    #[command(mut_arg("generated", |a| a.help("Where the migrations go")))]
    Compile {
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        generated: GeneratedArgs,
        /// Write nothing; exit 1 when the generated directory is stale.
        #[arg(long)]
        check: bool,
        /// Accept changes that destroy data (removing a dataset drops its table).
        #[arg(long)]
        allow_destructive: bool,
    },
    /// Apply pending migrations and register the pg_cron jobs.
    Apply {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        generated: GeneratedArgs,
        /// Print the SQL that would run and the jobs; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        cron: CronArgs,
    },
    /// Run enforcement now, through the same procedure the jobs call.
    Run {
        #[command(flatten)]
        db: DbArgs,
        /// Datasets to enforce (default: all).
        datasets: Vec<String>,
    },
    /// Erase every row of DATASET whose erase_by column equals KEY (archive included),
    /// or, with --subject, of every dataset of the subject, in one transaction.
    #[command(
        override_usage = "pgretain erase [OPTIONS] DATASET KEY\n       pgretain erase [OPTIONS] --subject NAME KEY"
    )]
    Erase {
        #[command(flatten)]
        db: DbArgs,
        /// Erase KEY from every dataset of this subject (the policy's `subjects`) instead of one dataset.
        #[arg(long, value_name = "NAME")]
        subject: Option<String>,
        /// DATASET KEY, or KEY alone with --subject.
        #[arg(value_name = "DATASET KEY", num_args = 1..=2, required = true)]
        args: Vec<String>,
    },
    /// What apply would change, and how many rows the next run would remove per dataset.
    Plan {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        generated: GeneratedArgs,
        /// Exit 1 when the next run (under the new policy) would remove rows.
        #[arg(long)]
        fail_if_removes: bool,
        /// The longest one count may take before plan reports the planner's estimate instead.
        #[arg(long, default_value = "30s", value_parser = cmd::plan::parse_timeout)]
        count_timeout: std::time::Duration,
    },
    /// A compliance report: the policy in words and, with a database, the evidence.
    #[command(mut_arg("generated", |a| a.help("Where the compiled state is")))]
    Report {
        #[command(flatten)]
        db: DbArgs,
        /// Write HTML here (and Markdown beside it, same stem); without it, print Markdown.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        generated: GeneratedArgs,
        /// Read the policy from this directory instead of the compiled state.
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Per dataset: retention, data, oldest row, overdue rows, partitions, last and next run.
    Status {
        #[command(flatten)]
        db: DbArgs,
        /// Output format: aligned text, or JSON (shape in docs/status-json.md).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        #[command(flatten)]
        cron: CronArgs,
    },
    /// Fail (exit 1) when a row is overdue, a job is missing or failing, or the database drifted from generated/.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        generated: GeneratedArgs,
        #[command(flatten)]
        cron: CronArgs,
    },
    /// Print the policy language as JSON Schema, for editors.
    Schema,
    /// Write a policy stub for existing tables, guessed from the live database.
    Init {
        #[command(flatten)]
        db: DbArgs,
        /// Write DIR/<dataset>.yaml per table (never over an existing file); without it, print the stub.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The tables, as schema.table.
        #[arg(required = true, value_name = "TABLE")]
        tables: Vec<String>,
    },
}

/// The database of a command that reads or changes one.
#[derive(Args)]
struct DbArgs {
    /// The database (URL or libpq key-value string); without it, the PG* variables.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

/// The policy directory of a command that reads the policy.
#[derive(Args)]
struct PolicyArgs {
    /// The policy directory.
    #[arg(default_value = "policies")]
    dir: PathBuf,
}

/// The compiled migrations and state (SPEC §5: `--generated DIR`).
#[derive(Args)]
struct GeneratedArgs {
    /// Where the migrations are.
    #[arg(long, default_value = "generated")]
    generated: PathBuf,
}

/// Where pg_cron keeps its jobs.
#[derive(Args)]
struct CronArgs {
    /// The database where pg_cron keeps its jobs (default: the server's cron.database_name).
    #[arg(long)]
    cron_database: Option<String>,
}

/// How an outcome is printed.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

/// Print a command's outcome (its warnings and problem on stderr, its
/// output on stdout as text or JSON) or its error, and pick the exit code.
fn finish<T: Outcome, E: Failure>(result: Result<T, E>, format: Format) -> ExitCode {
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            eprintln!("{e}");
            return code(e.exit_code());
        }
    };
    for w in out.warnings() {
        eprintln!("warning: {w}");
    }
    match format {
        Format::Text => print!("{}", out.text()),
        Format::Json => match out.json() {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: the output cannot be written as JSON: {e}");
                return code(exit::INVALID);
            }
        },
    }
    if let Some(problem) = out.problem() {
        eprintln!("{problem}");
    }
    code(out.exit_code())
}

/// A usage error clap cannot express (exit 2, clap's format).
fn usage(message: &str) -> ExitCode {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    let kind = clap::error::ErrorKind::WrongNumberOfValues;
    let error = match cli.find_subcommand_mut("erase") {
        Some(erase) => erase.error(kind, message),
        None => cli.error(kind, message),
    };
    let _ = error.print();
    code(exit::INVALID)
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
    let text = Format::Text;
    match cli.command {
        Command::Check { policy } => finish(
            cmd::check::check(&policy.dir).map(|summary| cmd::check::Checked { summary }),
            text,
        ),
        Command::Compile {
            policy,
            generated,
            check,
            allow_destructive,
        } => {
            let opts = cmd::compile::CompileOptions {
                policy_dir: policy.dir,
                generated_dir: generated.generated,
                check,
                allow_destructive,
            };
            finish(
                cmd::compile::compile(&opts)
                    .map(|o| cmd::compile::Compiled::new(&opts.generated_dir, o)),
                text,
            )
        }
        Command::Apply {
            db,
            generated,
            dry_run,
            cron,
        } => finish(
            cmd::apply::apply(&cmd::apply::ApplyOptions {
                database_url: db.database_url,
                generated_dir: generated.generated,
                dry_run,
                cron_database: cron.cron_database,
            }),
            text,
        ),
        Command::Run { db, datasets } => finish(
            cmd::run::run(db.database_url.as_deref(), &datasets).map(cmd::run::Runs),
            text,
        ),
        Command::Erase { db, subject, args } => match (subject, args.as_slice()) {
            (None, [dataset, key]) => finish(
                cmd::erase::erase(db.database_url.as_deref(), dataset, key),
                text,
            ),
            (Some(subject), [key]) => finish(
                cmd::erase::erase_subject(db.database_url.as_deref(), &subject, key),
                text,
            ),
            (Some(_), _) => usage(
                "with --subject NAME, give the KEY alone: `pgretain erase --subject NAME KEY`",
            ),
            (None, _) => usage(
                "give a DATASET and a KEY (`pgretain erase DATASET KEY`), or `--subject NAME KEY`",
            ),
        },
        Command::Plan {
            db,
            generated,
            fail_if_removes,
            count_timeout,
        } => finish(
            cmd::plan::plan(&cmd::plan::PlanOptions {
                database_url: db.database_url,
                generated_dir: generated.generated,
                count_timeout,
            })
            .map(|plan| cmd::plan::Planned {
                plan,
                fail_if_removes,
            }),
            text,
        ),
        Command::Report {
            db,
            out,
            generated,
            policies,
        } => finish(
            cmd::report::report(&cmd::report::ReportOptions {
                database_url: db.database_url,
                generated_dir: generated.generated,
                policy_dir: policies,
                out,
                now: None,
            }),
            text,
        ),
        Command::Status { db, format, cron } => finish(
            cmd::status::status(&cmd::status::StatusOptions {
                database_url: db.database_url,
                cron_database: cron.cron_database,
            }),
            format,
        ),
        Command::Verify {
            db,
            generated,
            cron,
        } => finish(
            cmd::verify::verify(&cmd::verify::VerifyOptions {
                database_url: db.database_url,
                generated_dir: generated.generated,
                cron_database: cron.cron_database,
            }),
            text,
        ),
        Command::Init { db, out, tables } => finish(
            cmd::init::init(&cmd::init::InitOptions {
                database_url: db.database_url,
                tables,
                out,
            }),
            text,
        ),
        Command::Schema => finish(
            Ok::<_, Infallible>(cmd::schema::Schema(cmd::schema::schema())),
            text,
        ),
    }
}
