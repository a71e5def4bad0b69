//! `caretrail`: every service in one process on the embedded defaults (SQLite files, the
//! in-process bus, a local object directory, a single-node ledger), plus the operator and
//! developer commands (`crypto`; `verify`, the offline receipt verifier). The services run the
//! same code as in Kubernetes; only adapters differ.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

mod allinone;
mod crypto_cli;
mod demo;
mod verify_cli;

#[derive(Parser)]
#[command(
    name = "caretrail",
    version,
    about = "Caretrail: consented, verifiable medical-record sharing"
)]
struct Cli {
    /// Configuration file (TOML); `CARETRAIL_*` environment variables override it.
    #[arg(long, global = true, env = "CARETRAIL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in this process behind the gateway (the default).
    Serve {
        /// On first start, create the demo tenant and write data/dev-credentials.json.
        #[arg(long)]
        seed_demo: bool,
    },
    /// Create a platform operator credential (client id + secret, printed once).
    Bootstrap {
        #[arg(long, default_value = "operator")]
        name: String,
    },
    /// Apply pending database migrations of every service, then exit.
    Migrate,
    /// Print the public OpenAPI document (what `make openapi` writes to openapi/).
    Openapi,
    /// Keys, hashes, signatures and streaming encryption for partner developers.
    #[command(subcommand)]
    Crypto(crypto_cli::CryptoCommand),
    /// Verify ledger receipts offline: proof bundles, signed checkpoints, consistency proofs.
    #[command(subcommand)]
    Verify(verify_cli::VerifyCommand),
    /// Run the pilot's story against a running server (`make run`) and narrate it.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve { seed_demo: false });
    if let Command::Crypto(cmd) = command {
        return crypto_cli::run(cmd);
    }
    if let Command::Verify(cmd) = command {
        return verify_cli::run(cmd);
    }
    if let Command::Demo(args) = &command {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::from(2);
            }
        };
        return match runtime.block_on(demo::run(args)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Openapi = command {
        return match allinone::openapi_json() {
            Ok(json) => {
                use std::io::Write;
                match writeln!(std::io::stdout(), "{json}") {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: writing the document: {e}");
                        ExitCode::from(2)
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        let mut config = allinone::AllInOneConfig::load(cli.config.as_deref())?;
        let _telemetry = caretrail_platform::telemetry::init("caretrail", config.log_format);
        match command {
            Command::Serve { seed_demo } => {
                config.seed_demo |= seed_demo;
                allinone::serve(config).await
            }
            Command::Bootstrap { name } => allinone::bootstrap(&config, &name).await,
            Command::Migrate => allinone::migrate(&config).await,
            Command::Openapi | Command::Crypto(_) | Command::Verify(_) | Command::Demo(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
