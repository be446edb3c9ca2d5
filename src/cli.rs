//! The command line of the multi-call binary `speculative-images`.
//!
//! Invoked by Ansible with one argument, the path of an args file, it runs
//! the module named in `_ansible_module_name` (or in its own file name,
//! `AnsiballZ_<module>`). Otherwise it is a command-line tool whose
//! subcommands serve people, tests and benchmarks.

use std::ffi::OsString;
use std::path::Path;

use clap::{Parser, Subcommand};

use crate::ansible::runner::{
    early_failure, emit, install_quiet_panic_hook, load_invocation, module_args_path,
};
use crate::modules;

/// speculative.images: speculative container image gating for Zuul.
#[derive(Debug, Parser)]
#[command(name = "speculative-images", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry server: a buildset registry, or a site's
    /// intermediate registry.
    Serve {
        /// The configuration file: `.json` as `run_buildset_registry`
        /// writes it, or a site configuration in `.yaml`/`.yml`/`.toml`
        /// (see docs/intermediate-registry.md).
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Copy an image (every platform) between registries.
    Copy(crate::client::command::CopyCommand),
}

/// Entry point of the multi-call binary; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    crate::crypto::install_default();
    if let Some(path) = module_args_path(&args) {
        return run_as_module(&args[0], path);
    }
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Copy(copy) => copy.run(),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("speculative-images: {e:#}");
            1
        }
    }
}

/// `serve --config FILE`: run the registry until SIGTERM.
fn serve(config: &Path) -> anyhow::Result<()> {
    let config = crate::registry::ServerConfig::from_file(config)?;
    crate::registry::serve(&config)
}

fn run_as_module(argv0: &OsString, args_path: &Path) -> i32 {
    install_quiet_panic_hook();
    let invocation = match load_invocation(args_path) {
        Ok(inv) => inv,
        Err(failure) => return emit(&failure, true),
    };
    let from_name = invocation.context.short_name().to_string();
    let from_file = Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_start_matches("AnsiballZ_").to_string())
        .unwrap_or_default();
    let entry = modules::find(&from_name).or_else(|| modules::find(&from_file));
    match entry {
        Some(entry) => {
            let (result, failed) = entry(invocation);
            emit(&result, failed)
        }
        None => emit(
            &early_failure(&format!(
                "unknown module {from_name:?}: this binary provides {}",
                modules::MODULES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            true,
        ),
    }
}
