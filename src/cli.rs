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
    /// Prune a registry's storage: tags matching a pattern older than an
    /// age, then manifests and blobs nothing kept references, then stale
    /// uploads. Safe while the server runs and clients push.
    Prune(PruneCommand),
}

/// `speculative-images prune`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("store").required(true).args(["storage", "config"]))]
pub struct PruneCommand {
    /// The storage root (the `storage` of the server's configuration).
    #[arg(long)]
    pub storage: Option<std::path::PathBuf>,
    /// The server's configuration file (its storage, and its `prune:`
    /// section's tags, ages and dry_run unless given here).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Remove tags matching this glob (`*_*`; `REPO_GLOB:TAG_GLOB` for
    /// some repositories only); repeat for more.
    #[arg(long = "tags", value_name = "PATTERN", value_parser = parse_pattern)]
    pub tags: Vec<crate::registry::storage::TagPattern>,
    /// ...when pushed longer ago than this (`7d`, `36h`).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<std::time::Duration>,
    /// Unreferenced manifests and blobs younger than this stay (default
    /// 1h: content pushed for a manifest not pushed yet).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub grace: Option<std::time::Duration>,
    /// Print what would go, with sizes, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_pattern(text: &str) -> Result<crate::registry::storage::TagPattern, String> {
    text.parse()
}

fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not an age like 7d, 36h or 90m ({e})"))
}

impl PruneCommand {
    /// Run the prune, printing one line per item and a summary.
    pub fn run(self) -> anyhow::Result<()> {
        use crate::registry::storage::{prune, PrunePolicy, Storage};
        use anyhow::Context as _;
        let mut policy = PrunePolicy {
            tags: Vec::new(),
            older_than: std::time::Duration::MAX,
            grace: prune::DEFAULT_GRACE,
            dry_run: false,
        };
        let root = match (&self.storage, &self.config) {
            (Some(root), _) => root.clone(),
            (None, Some(path)) => {
                let config = crate::registry::ServerConfig::from_file(path)?;
                if let Some(schedule) = config.prune {
                    policy = schedule.policy;
                }
                config.storage
            }
            (None, None) => anyhow::bail!("--storage or --config: name the storage to prune"),
        };
        if !self.tags.is_empty() {
            policy.tags = self.tags;
            let configured =
                (policy.older_than != std::time::Duration::MAX).then_some(policy.older_than);
            policy.older_than = self
                .older_than
                .or(configured)
                .context("--older-than: needed with --tags (e.g. --older-than 7d)")?;
        } else if let Some(age) = self.older_than {
            anyhow::ensure!(
                !policy.tags.is_empty(),
                "--tags: needed with --older-than (e.g. --tags '*_*')"
            );
            policy.older_than = age;
        }
        if let Some(grace) = self.grace {
            policy.grace = grace;
        }
        policy.dry_run |= self.dry_run;
        let storage = Storage::attach(&root)
            .with_context(|| format!("opening storage {}", root.display()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let report = runtime
            .block_on(storage.prune(&policy))
            .with_context(|| format!("pruning {}", root.display()))?;
        let verb = if report.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for item in &report.items {
            println!("{verb} {item}");
        }
        println!("{}", report.summary());
        Ok(())
    }
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
        Command::Prune(prune) => prune.run(),
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
