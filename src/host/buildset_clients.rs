//! Pointing every container tool on a host at a buildset registry: the
//! plan of every file to edit (computed, and validated, before anything is
//! written), then applying it. The daemons and commands that react to the
//! files (dockerd's reload, the CA bundle rebuild) are the caller's, so the
//! plan runs on a temporary root in tests.

use std::net::IpAddr;

use super::atomic::Ownership;
use super::ca_store::CaStore;
use super::edit::{EditError, FileEdit};
use super::registries_conf::Namespace;
use super::users::Account;
use super::{
    buildkitd_toml, certs_d, daemon_json, docker_config, etc_hosts, registries_conf, HostPaths,
};
use crate::zuul::BUILDSET_REGISTRY_ALIAS;

/// A buildset registry and how the host should use it, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The registry's host as given (name or IP literal, IPv6 bare).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// User clients log in as.
    pub username: String,
    /// That user's password.
    pub password: String,
    /// PEM of the CA that signed the registry's certificate.
    pub cert: String,
    /// Registries whose images the buildset registry may hold.
    pub namespaces: Vec<Namespace>,
    /// `unqualified-search-registries` for containers tools.
    pub unqualified: Vec<String>,
    /// Whose docker CLI credentials to set.
    pub docker_user: Account,
}

impl Settings {
    /// The host's address when it is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }

    /// The name every client file uses: the alias for an IP literal (which
    /// the clients cannot parse in an image name), the host otherwise.
    pub fn registry_name(&self) -> &str {
        if self.ip().is_some() {
            BUILDSET_REGISTRY_ALIAS
        } else {
            &self.host
        }
    }

    /// `<name>:<port>`, as written in every client file.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.registry_name(), self.port)
    }

    /// The docker `registry-mirrors` URL.
    pub fn mirror_url(&self) -> String {
        daemon_json::mirror_url(&self.authority())
    }

    /// The `auth` value of the credential files (a secret).
    pub fn auth_token(&self) -> String {
        docker_config::auth_token(&self.username, &self.password)
    }
}

/// Every file edit, in the order they are applied, and what reacts to them.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The edits, unchanged files included.
    pub edits: Vec<FileEdit>,
    /// The CA store, and the index of its anchor in `edits`.
    pub ca_store: Option<(CaStore, usize)>,
    /// Index of daemon.json in `edits`.
    pub daemon_json: usize,
}

impl Plan {
    /// The edits that change a file.
    pub fn changed(&self) -> impl Iterator<Item = &FileEdit> {
        self.edits.iter().filter(|e| e.changed())
    }

    /// Whether the CA anchor changes (the bundle must be rebuilt).
    pub fn ca_changed(&self) -> bool {
        self.ca_store.is_some_and(|(_, i)| self.edits[i].changed())
    }

    /// Whether daemon.json changes.
    pub fn daemon_json_changed(&self) -> bool {
        self.edits[self.daemon_json].changed()
    }

    /// Write every changed file; the host paths written.
    pub fn apply(&self) -> Result<Vec<String>, EditError> {
        let mut written = Vec::new();
        for edit in &self.edits {
            if edit.apply()? {
                written.push(edit.display.clone());
            }
        }
        Ok(written)
    }
}

/// Plan every file: read them all and compute their new content. Fails,
/// naming the file, before anything is written.
pub fn plan(paths: &HostPaths, settings: &Settings) -> Result<Plan, EditError> {
    let authority = settings.authority();
    let mut edits = Vec::new();

    if let Some(ip) = settings.ip() {
        edits.push(FileEdit::plan(
            paths,
            &paths.etc_hosts(),
            Ownership::keep_or(0o644),
            |old| etc_hosts::with_alias(old, ip, BUILDSET_REGISTRY_ALIAS),
        )?);
    }

    let ca_crt = certs_d::ca_crt_path(paths, &authority);
    edits.push(FileEdit::plan(
        paths,
        &ca_crt,
        Ownership::keep_or(0o644),
        |old| certs_d::with_ca(old, &settings.cert),
    )?);

    let ca_store = match CaStore::detect(paths) {
        Some(store) => {
            edits.push(FileEdit::plan(
                paths,
                &store.anchor_path(paths),
                Ownership::keep_or(0o644),
                |old| certs_d::with_ca(old, &settings.cert),
            )?);
            Some((store, edits.len() - 1))
        }
        None => None,
    };

    let mirror = settings.mirror_url();
    edits.push(FileEdit::plan(
        paths,
        &paths.daemon_json(),
        Ownership::keep_or(0o644),
        |old| daemon_json::with_first_mirror(old, &mirror),
    )?);
    let daemon_json = edits.len() - 1;

    let token = settings.auth_token();
    let user = &settings.docker_user;
    let owner = Some((user.uid, user.gid));
    let config_json = paths.path(&user.home).join(".docker/config.json");
    edits.push(
        FileEdit::plan(
            paths,
            &config_json,
            Ownership::exactly(0o600, owner),
            |old| docker_config::with_auth(old, &authority, &token),
        )?
        .with_dir_mode(0o700),
    );
    let runtime_dir = paths.path(format!("/run/user/{}", user.uid));
    if runtime_dir.is_dir() {
        edits.push(
            FileEdit::plan(
                paths,
                &runtime_dir.join("containers/auth.json"),
                Ownership::exactly(0o600, owner),
                |old| docker_config::with_auth(old, &authority, &token),
            )?
            .with_dir_mode(0o700),
        );
    }

    edits.push(FileEdit::plan(
        paths,
        &paths.registries_conf(),
        Ownership::keep_or(0o644),
        |old| {
            registries_conf::with_buildset_mirrors(
                old,
                &authority,
                &settings.namespaces,
                &settings.unqualified,
            )
        },
    )?);

    let ca_display = HostPaths::system()
        .docker_certs_d()
        .join(&authority)
        .join("ca.crt")
        .display()
        .to_string();
    edits.push(FileEdit::plan(
        paths,
        &paths.buildkitd_toml(),
        Ownership::keep_or(0o644),
        |old| {
            buildkitd_toml::with_buildset_mirrors(
                old,
                &authority,
                &ca_display,
                &settings.namespaces,
            )
        },
    )?);

    Ok(Plan {
        edits,
        ca_store,
        daemon_json,
    })
}
