//! Pruning on a schedule inside `serve`: a site's `prune:` section
//! ([`PruneSchedule`]) runs [`Storage::prune`](super::storage::Storage::prune)
//! every `every`, logging one line per item removed and a summary.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::storage::PrunePolicy;

/// When and how the server prunes its own storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneSchedule {
    /// Time between prunes (the first runs one period after the start).
    pub every: Duration,
    /// What each prune removes.
    pub policy: PrunePolicy,
}

/// Start the schedule, if the configuration has one (call inside the
/// server's runtime).
pub fn start(state: &super::AppState, schedule: Option<&PruneSchedule>) {
    let Some(schedule) = schedule.cloned() else {
        return;
    };
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(schedule.every).await;
            run(&state, &schedule.policy).await;
        }
    });
}

/// One scheduled prune, logged.
pub async fn run(state: &super::AppState, policy: &PrunePolicy) {
    match state.storage.prune(policy).await {
        Ok(report) => {
            let verb = if report.dry_run {
                "would remove"
            } else {
                "removed"
            };
            for item in &report.items {
                tracing::info!("prune: {verb} {item}");
            }
            tracing::info!("prune: {}", report.summary());
        }
        Err(e) => tracing::warn!("prune: {e}"),
    }
}

/// Check a schedule's period (site configuration): at least a second.
pub fn check_every(every: Duration) -> Result<(), String> {
    if every < Duration::from_secs(1) {
        return Err(format!(
            "{} is too often; at least 1s",
            humantime::format_duration(every)
        ));
    }
    Ok(())
}
