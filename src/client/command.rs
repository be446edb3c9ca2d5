//! `speculative-images copy SRC DST`: the copy engine for people and
//! benchmarks. This file only turns flags into endpoints and prints the
//! report; the work is the engine's.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;

use super::{copy_reference, CopyOptions, Endpoint, RemoteRegistry};
use crate::oci::Reference;

/// Copy an image (every platform) from one registry to another.
#[derive(Debug, clap::Args)]
pub struct CopyCommand {
    /// Source, `[docker://]host[:port]/repository[:tag|@digest]`.
    pub source: String,
    /// Destination, `[docker://]host[:port]/repository[:tag]`.
    pub destination: String,
    /// Source credentials, `USER:PASSWORD`.
    #[arg(long, env = "SPECULATIVE_IMAGES_SRC_CREDS", hide_env_values = true)]
    pub src_creds: Option<String>,
    /// Destination credentials, `USER:PASSWORD`.
    #[arg(long, env = "SPECULATIVE_IMAGES_DEST_CREDS", hide_env_values = true)]
    pub dest_creds: Option<String>,
    /// PEM certificate to trust for the source (instead of system roots).
    #[arg(long)]
    pub src_cert: Option<PathBuf>,
    /// PEM certificate to trust for the destination.
    #[arg(long)]
    pub dest_cert: Option<PathBuf>,
    /// Reach the source over plain HTTP.
    #[arg(long)]
    pub src_insecure: bool,
    /// Reach the destination over plain HTTP.
    #[arg(long)]
    pub dest_insecure: bool,
    /// Blobs in flight at once.
    #[arg(long, default_value_t = CopyOptions::default().parallelism)]
    pub parallelism: usize,
}

impl CopyCommand {
    /// Run the copy and print its report as JSON on stdout.
    pub fn run(self) -> anyhow::Result<()> {
        let source: Reference = self.source.parse()?;
        let destination: Reference = self.destination.parse()?;
        let src = endpoint(&source, &self.src_creds, &self.src_cert, self.src_insecure)?;
        let dst = endpoint(
            &destination,
            &self.dest_creds,
            &self.dest_cert,
            self.dest_insecure,
        )?;
        let options = CopyOptions {
            parallelism: self.parallelism,
            ..CopyOptions::default()
        };
        let started = Instant::now();
        let report = super::runtime::block_on(async {
            let src = RemoteRegistry::new(src)?;
            let dst = RemoteRegistry::new(dst)?;
            copy_reference(&src, &source, &dst, &destination, &options).await
        })
        .context("starting the async runtime")??;
        if std::io::stderr().is_terminal() {
            eprintln!(
                "{source} -> {destination}: {} blobs copied ({} bytes), {} mounted, {} already there, {} manifests written in {:.2?}",
                report.blobs_copied,
                report.bytes_copied,
                report.blobs_mounted,
                report.blobs_skipped,
                report.manifests_written,
                started.elapsed()
            );
        }
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    }
}

fn endpoint(
    reference: &Reference,
    creds: &Option<String>,
    cert: &Option<PathBuf>,
    insecure: bool,
) -> anyhow::Result<Endpoint> {
    let mut endpoint = Endpoint::new(reference.registry.clone()).insecure(insecure);
    if let Some(creds) = creds {
        let (user, password) = creds
            .split_once(':')
            .context("credentials must be USER:PASSWORD")?;
        endpoint = endpoint.with_credentials(user, password);
    }
    if let Some(path) = cert {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading certificate {}", path.display()))?;
        endpoint = endpoint.with_ca_pem(pem);
    }
    Ok(endpoint)
}
