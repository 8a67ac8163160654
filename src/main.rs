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
    /// Write new migrations to the generated directory, or check they are current.
    Compile {
        /// The policy directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Where the migrations go.
        #[arg(long, default_value = "generated")]
        generated: PathBuf,
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
        /// Where the migrations are.
        #[arg(long, default_value = "generated")]
        generated: PathBuf,
        /// Print the SQL that would run and the jobs; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The database where pg_cron keeps its jobs (default: the server's cron.database_name).
        #[arg(long)]
        cron_database: Option<String>,
    },
    /// Run enforcement now, through the same procedure the jobs call.
    Run {
        #[command(flatten)]
        db: DbArgs,
        /// Datasets to enforce (default: all).
        datasets: Vec<String>,
    },
    /// Erase every row of DATASET whose erase_by column equals KEY (archive included).
    Erase {
        #[command(flatten)]
        db: DbArgs,
        dataset: String,
        key: String,
    },
    /// What apply would change, and how many rows the next run would remove per dataset.
    Plan {
        #[command(flatten)]
        db: DbArgs,
        /// Where the migrations are.
        #[arg(long, default_value = "generated")]
        generated: PathBuf,
        /// Exit 1 when the next run (under the new policy) would remove rows.
        #[arg(long)]
        fail_if_removes: bool,
        /// The longest one count may take before plan reports the planner's estimate instead.
        #[arg(long, default_value = "30s", value_parser = pgretain::plan::parse_timeout)]
        count_timeout: std::time::Duration,
    },
    /// A compliance report: the policy in words and, with a database, the evidence.
    Report {
        #[command(flatten)]
        db: DbArgs,
        /// Write HTML here (and Markdown beside it, same stem); without it, print Markdown.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where the compiled state is.
        #[arg(long, default_value = "generated")]
        generated: PathBuf,
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
        format: StatusFormat,
        /// The database where pg_cron keeps its jobs (default: the server's cron.database_name).
        #[arg(long)]
        cron_database: Option<String>,
    },
    /// Fail (exit 1) when a row is overdue, a job is missing or failing, or the database drifted from generated/.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        /// Where the migrations are.
        #[arg(long, default_value = "generated")]
        generated: PathBuf,
        /// The database where pg_cron keeps its jobs (default: the server's cron.database_name).
        #[arg(long)]
        cron_database: Option<String>,
    },
    /// Print the policy language as JSON Schema, for editors.
    Schema,
}

/// `status --format`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum StatusFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct DbArgs {
    /// The database (URL or libpq key-value string); without it, the PG* variables.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
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
        Command::Compile {
            dir,
            generated,
            check,
            allow_destructive,
        } => {
            let opts = pgretain::cmd::compile::CompileOptions {
                policy_dir: dir,
                generated_dir: generated,
                check,
                allow_destructive,
            };
            match pgretain::cmd::compile::compile(&opts) {
                Ok(pgretain::cmd::compile::CompileOutcome::UpToDate) => {
                    println!("{} is up to date", opts.generated_dir.display());
                    code(exit::OK)
                }
                Ok(pgretain::cmd::compile::CompileOutcome::Written { file, changes }) => {
                    println!("wrote {}", opts.generated_dir.join(&file).display());
                    for c in changes {
                        println!("  {c}");
                    }
                    code(exit::OK)
                }
                Ok(pgretain::cmd::compile::CompileOutcome::Stale(reasons)) => {
                    eprintln!("error: {} is out of date:", opts.generated_dir.display());
                    for r in reasons {
                        eprintln!("  {r}");
                    }
                    code(exit::PROBLEM)
                }
                Err(e) => {
                    eprintln!("{e}");
                    code(exit::INVALID)
                }
            }
        }
        Command::Apply {
            db,
            generated,
            dry_run,
            cron_database,
        } => {
            let opts = pgretain::apply::ApplyOptions {
                database_url: db.database_url,
                generated_dir: generated,
                dry_run,
                cron_database,
            };
            match pgretain::apply::apply(&opts) {
                Ok(r) => {
                    for w in &r.warnings {
                        eprintln!("warning: {w}");
                    }
                    if dry_run {
                        println!("-- dry run: nothing was changed");
                        for (m, sql) in r.migrations.iter().zip(&r.sql) {
                            println!("-- migration {m} would be applied:\n{sql}");
                        }
                        if r.migrations.is_empty() {
                            println!("-- no pending migrations");
                        }
                        for j in &r.jobs {
                            println!(
                                "-- job {} `{}` in database {}{} would run: {}",
                                j.name,
                                j.schedule,
                                j.database,
                                j.username
                                    .as_deref()
                                    .map(|u| format!(" as role {u}"))
                                    .unwrap_or_default(),
                                j.command
                            );
                        }
                        for j in &r.removed_jobs {
                            println!("-- job {j} would be removed");
                        }
                    } else {
                        if r.migrations.is_empty() {
                            println!("no pending migrations");
                        }
                        for m in &r.migrations {
                            println!("applied {m}");
                        }
                        for j in &r.jobs {
                            println!(
                                "scheduled {} `{}` in database {}{}: {}",
                                j.name,
                                j.schedule,
                                j.database,
                                j.username
                                    .as_deref()
                                    .map(|u| format!(" as role {u}"))
                                    .unwrap_or_default(),
                                j.command
                            );
                        }
                        for j in &r.removed_jobs {
                            println!("removed job {j}");
                        }
                    }
                    code(exit::OK)
                }
                Err(e) => {
                    eprintln!("{e}");
                    code(exit::DATABASE)
                }
            }
        }
        Command::Run { db, datasets } => {
            match pgretain::enforce::run(db.database_url.as_deref(), &datasets) {
                Ok(results) => {
                    for r in results {
                        println!("{r}");
                    }
                    code(exit::OK)
                }
                Err(e) => {
                    eprintln!("{e}");
                    code(exit::DATABASE)
                }
            }
        }
        Command::Erase { db, dataset, key } => {
            match pgretain::enforce::erase(db.database_url.as_deref(), &dataset, &key) {
                Ok(r) => {
                    println!(
                        "{dataset} {key}: erased {} row(s) and {} archived row(s)",
                        r.rows_deleted, r.archive_rows_deleted
                    );
                    if r.rows_kept_by_hold > 0 {
                        eprintln!(
                            "kept {} row(s) under legal hold: {}",
                            r.rows_kept_by_hold,
                            r.holds.unwrap_or_default()
                        );
                        code(exit::PROBLEM)
                    } else {
                        code(exit::OK)
                    }
                }
                Err(e) => {
                    eprintln!("{e}");
                    code(exit::DATABASE)
                }
            }
        }
        Command::Plan {
            db,
            generated,
            fail_if_removes,
            count_timeout,
        } => {
            let opts = pgretain::plan::PlanOptions {
                database_url: db.database_url,
                generated_dir: generated,
                count_timeout,
            };
            match pgretain::plan::plan(&opts) {
                Ok(p) => {
                    print!("{p}");
                    if fail_if_removes && p.removes_rows() {
                        eprintln!("error: the next run would remove rows (--fail-if-removes)");
                        code(exit::PROBLEM)
                    } else {
                        code(exit::OK)
                    }
                }
                Err(e @ pgretain::plan::PlanError::Generated(_)) => {
                    eprintln!("{e}");
                    code(exit::INVALID)
                }
                Err(e) => {
                    eprintln!("{e}");
                    code(exit::DATABASE)
                }
            }
        }
        Command::Report {
            db,
            out,
            generated,
            policies,
        } => {
            let opts = pgretain::report::ReportOptions {
                database_url: db.database_url,
                generated_dir: generated,
                policy_dir: policies,
                out,
                now: None,
            };
            match pgretain::report::report(&opts) {
                Ok(pgretain::report::ReportOutput::Markdown(md)) => {
                    print!("{md}");
                    code(exit::OK)
                }
                Ok(pgretain::report::ReportOutput::Files(files)) => {
                    for f in files {
                        println!("wrote {}", f.display());
                    }
                    code(exit::OK)
                }
                Err(e @ pgretain::report::ReportError::Database(_)) => {
                    eprintln!("{e}");
                    code(exit::DATABASE)
                }
                Err(e) => {
                    eprintln!("{e}");
                    code(exit::INVALID)
                }
            }
        }
        Command::Status {
            db,
            format,
            cron_database,
        } => {
            let opts = pgretain::status::StatusOptions {
                database_url: db.database_url,
                cron_database,
            };
            match pgretain::status::status(&opts) {
                Ok(st) => {
                    match format {
                        StatusFormat::Text => print!("{}", st.to_text()),
                        StatusFormat::Json => println!("{}", st.to_json()),
                    }
                    code(exit::OK)
                }
                Err(e) => {
                    eprintln!("{e}");
                    code(exit::DATABASE)
                }
            }
        }
        Command::Verify {
            db,
            generated,
            cron_database,
        } => {
            let opts = pgretain::verify::VerifyOptions {
                database_url: db.database_url,
                generated_dir: generated,
                cron_database,
            };
            match pgretain::verify::verify(&opts) {
                Ok(r) => {
                    print!("{}", r.to_text());
                    code(if r.is_clean() {
                        exit::OK
                    } else {
                        exit::PROBLEM
                    })
                }
                Err(e @ pgretain::verify::VerifyError::Generated(_)) => {
                    eprintln!("{e}");
                    code(exit::INVALID)
                }
                Err(e) => {
                    eprintln!("{e}");
                    code(exit::DATABASE)
                }
            }
        }
        Command::Schema => {
            print!("{}", pgretain::schema());
            code(exit::OK)
        }
    }
}
