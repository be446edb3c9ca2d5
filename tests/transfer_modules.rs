//! `pull_from_intermediate_registry` and `push_to_intermediate_registry`,
//! run as Ansible runs them, between Debian's docker-registry as the
//! intermediate registry (TLS + htpasswd, as the seed configures it) and
//! our buildset registry server (bearer tokens); images built and pulled by
//! the real docker.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client_fixtures::{client_of, index_of, push_index, random_image, Flavor};
use crate::support::buildset::BuildsetServer;
use crate::support::distribution::Distribution;
use crate::transfer_support::{
    client_for, registry_facts, run_module, DockerClient, DockerImage, TestRegistry,
};

const BUILD: &str = "f00dfeed";

fn artifact(inter: &Distribution, repository: &str, tag: &str) -> Value {
    json!({
        "name": format!("{repository}:{tag}"),
        "url": format!("docker://{}/{repository}:{BUILD}_{tag}", inter.authority()),
        "metadata": {"type": "container_image", "repository": repository, "tag": tag},
        "project": "org/project",
        "change": "1000",
        "job": "build-image",
    })
}

fn pull_args(inter: &Distribution, buildset: &impl TestRegistry, artifacts: Value) -> Value {
    json!({
        "buildset_registry": registry_facts(buildset),
        "intermediate_registry": registry_facts(inter),
        "zuul_artifacts": artifacts,
    })
}

fn images_of(result: &Value) -> &Vec<Value> {
    result["images"].as_array().expect("images list")
}

#[test]
fn a_previous_build_is_pulled_into_the_buildset_registry_and_served_to_docker() {
    let inter = Distribution::start();
    let buildset = BuildsetServer::start();
    let image = DockerImage::build("app");
    let digest = image.push_to(&inter, "org/app", &format!("{BUILD}_latest"));

    let artifacts = json!([
        {"name": "docs", "url": "https://logs.example.org/docs/", "metadata": {"type": "docs_site"}},
        artifact(&inter, "org/app", "latest"),
    ]);
    let check = run_module(
        "pull_from_intermediate_registry",
        pull_args(&inter, &buildset, artifacts.clone()),
        true,
    );
    assert_eq!(check["changed"], true, "{check}");
    assert_eq!(images_of(&check)[0]["digest"], digest.as_str());

    let result = run_module(
        "pull_from_intermediate_registry",
        pull_args(&inter, &buildset, artifacts.clone()),
        false,
    );
    assert_eq!(result["failed"], false, "{result}");
    assert_eq!(result["changed"], true);
    let pulled = images_of(&result);
    assert_eq!(pulled.len(), 1, "{result}");
    assert_eq!(pulled[0]["repository"], "org/app");
    assert_eq!(pulled[0]["tag"], "latest");
    assert_eq!(pulled[0]["digest"], digest.as_str());
    assert!(pulled[0]["blobs_copied"].as_u64().unwrap() >= 2, "{result}");

    let mut docker = DockerClient::login(&buildset);
    let reference = format!("{}/org/app:latest", buildset.authority());
    assert_eq!(docker.pull(&reference), digest);

    // Second pull: nothing moves. The intermediate registry serves only the
    // manifest; no blob is read or written on either side.
    let before = inter.access_log().len();
    let buildset_before = buildset.requests().len();
    let again = run_module(
        "pull_from_intermediate_registry",
        pull_args(&inter, &buildset, artifacts),
        false,
    );
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(images_of(&again)[0]["blobs_copied"], 0);
    assert_eq!(images_of(&again)[0]["bytes_copied"], 0);
    let requests = inter.access_log()[before..].join("\n");
    assert!(!requests.contains("/blobs/"), "{requests}");
    let requests = buildset.requests()[buildset_before..].join("\n");
    assert!(!requests.contains("/blobs/"), "{requests}");
    assert!(!requests.contains("PUT "), "{requests}");
}

#[test]
fn a_multi_arch_index_keeps_its_digest() {
    let inter = Distribution::start();
    let buildset = BuildsetServer::start();
    let amd = random_image(Flavor::Oci, "amd64", &[200_000, 10]);
    let arm = random_image(Flavor::Oci, "arm64", &[210_000, 10]);
    let index = index_of(Flavor::Oci, &[&amd, &arm]);
    let src = client_of(&inter);
    speculative_images::client::runtime::block_on(push_index(
        &src,
        "docker.io/org/multi",
        &format!("{BUILD}_v1"),
        &[&amd, &arm],
        &index,
    ))
    .unwrap();

    let result = run_module(
        "pull_from_intermediate_registry",
        pull_args(
            &inter,
            &buildset,
            json!([artifact(&inter, "docker.io/org/multi", "v1")]),
        ),
        false,
    );
    let pulled = &images_of(&result)[0];
    // docker.io images are stored without the docker.io/ prefix.
    assert_eq!(pulled["repository"], "org/multi", "{result}");
    assert_eq!(pulled["digest"], index.digest.to_string());
    let dst = client_for(&buildset);
    let arrived = speculative_images::client::runtime::block_on(async {
        use speculative_images::client::Registry;
        dst.manifest_get(&"org/multi".parse().unwrap(), &"v1".parse().unwrap())
            .await
    })
    .unwrap()
    .unwrap();
    assert_eq!(arrived.bytes, index.bytes);
}

#[test]
fn pushed_artifacts_round_trip_into_a_following_pull() {
    let inter = Distribution::start();
    let buildset = BuildsetServer::start();
    let image = DockerImage::build("roundtrip");
    let latest = image.push_to(&buildset, "org/app", "latest");
    let v1 = image.push_to(&buildset, "org/app", "v1");
    assert_eq!(latest, v1);

    let push_args = |zuul_success: bool| {
        json!({
            "buildset_registry": registry_facts(&buildset),
            "intermediate_registry": registry_facts(&inter),
            "docker_images": [{"context": ".", "repository": "org/app", "tags": ["latest", "v1"]}],
            "zuul": {"build": BUILD, "change": "1000", "pipeline": "gate"},
            "zuul_success": zuul_success,
        })
    };
    let skipped = run_module("push_to_intermediate_registry", push_args(false), false);
    assert_eq!(skipped["changed"], false);
    assert_eq!(skipped["artifacts"], json!([]));

    // Check mode, apply, check, apply (the push and then the pull): each
    // check predicts the run after it.
    let check = run_module("push_to_intermediate_registry", push_args(true), true);
    assert_eq!(check["failed"], false, "{check}");
    assert_eq!(check["changed"], true, "{check}");
    let pushed = run_module("push_to_intermediate_registry", push_args(true), false);
    assert_eq!(pushed["failed"], false, "{pushed}");
    assert_eq!(check["artifacts"], pushed["artifacts"]);
    assert_eq!(pushed["changed"], true);
    assert_eq!(
        pushed["artifacts"],
        json!([
            {"name": "org/app:latest",
             "url": format!("docker://{}/org/app:{BUILD}_latest", inter.authority()),
             "metadata": {"type": "container_image", "repository": "org/app", "tag": "latest"}},
            {"name": "org/app:v1",
             "url": format!("docker://{}/org/app:{BUILD}_v1", inter.authority()),
             "metadata": {"type": "container_image", "repository": "org/app", "tag": "v1"}},
        ])
    );
    let check = run_module("push_to_intermediate_registry", push_args(true), true);
    assert_eq!(check["changed"], false, "{check}");
    let again = run_module("push_to_intermediate_registry", push_args(true), false);
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["artifacts"], pushed["artifacts"]);

    // The next change's buildset pulls exactly those records.
    let next_buildset = BuildsetServer::start();
    let pull = |check_mode| {
        run_module(
            "pull_from_intermediate_registry",
            pull_args(&inter, &next_buildset, pushed["artifacts"].clone()),
            check_mode,
        )
    };
    for (round, check_mode, changed) in [
        ("first check", true, true),
        ("first pull", false, true),
        ("second check", true, false),
        ("second pull", false, false),
    ] {
        let pulled = pull(check_mode);
        assert_eq!(pulled["failed"], false, "{round}: {pulled}");
        assert_eq!(pulled["changed"], changed, "{round}: {pulled}");
        let images = images_of(&pulled);
        assert_eq!(images.len(), 2, "{round}: {pulled}");
        for image in images {
            assert_eq!(image["digest"], latest.as_str(), "{round}");
        }
    }
}

#[test]
fn both_registries_over_ipv6_only() {
    let inter = Distribution::start_ipv6();
    let buildset = BuildsetServer::start_ipv6();
    let image = random_image(Flavor::Docker, "amd64", &[100_000, 1000]);
    let src = client_for(&buildset);
    speculative_images::client::runtime::block_on(crate::client_fixtures::push_image(
        &src,
        "org/v6",
        Some("latest"),
        &image,
    ))
    .unwrap();
    let pushed = run_module(
        "push_to_intermediate_registry",
        json!({
            "buildset_registry": registry_facts(&buildset),
            "intermediate_registry": registry_facts(&inter),
            "container_images": [{"repository": "org/v6"}],
            "zuul": {"build": BUILD},
        }),
        false,
    );
    assert_eq!(pushed["failed"], false, "{pushed}");
    assert_eq!(
        pushed["artifacts"][0]["url"],
        format!("docker://[::1]:{}/org/v6:{BUILD}_latest", inter.port)
    );
    let next = BuildsetServer::start_ipv6();
    let pulled = run_module(
        "pull_from_intermediate_registry",
        pull_args(&inter, &next, pushed["artifacts"].clone()),
        false,
    );
    assert_eq!(
        images_of(&pulled)[0]["digest"],
        image.manifest.digest.to_string(),
        "{pulled}"
    );
}

#[test]
fn bad_input_fails_clearly_without_secrets() {
    let inter = Distribution::start();
    let buildset = BuildsetServer::start();

    // Wrong intermediate password: the registry and the user are named, the
    // password is not shown.
    let mut args = pull_args(
        &inter,
        &buildset,
        json!([artifact(&inter, "org/app", "latest")]),
    );
    args["intermediate_registry"]["password"] = json!("wrong-password-8231");
    let result = run_module("pull_from_intermediate_registry", args, false);
    assert_eq!(result["failed"], true);
    let msg = result["msg"].as_str().unwrap();
    assert_eq!(
        msg,
        format!(
            "pulling artifact \"org/app:latest\": copying {0}/org/app:{BUILD}_latest to {1}/org/app:latest: \
             GET https://{0}/v2/org/app/manifests/{BUILD}_latest: 401 Unauthorized \
             (UNAUTHORIZED: authentication required): registry {0} refused the credentials of user \"zuul\"",
            inter.authority(),
            buildset.authority()
        )
    );
    assert!(!result.to_string().contains("wrong-password-8231"));

    // Unknown tag.
    let result = run_module(
        "pull_from_intermediate_registry",
        pull_args(
            &inter,
            &buildset,
            json!([artifact(&inter, "org/app", "nope")]),
        ),
        false,
    );
    let msg = result["msg"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "pulling artifact \"org/app:nope\": copying {}/org/app:{BUILD}_nope",
            inter.authority()
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!(
            "404 Not Found (MANIFEST_UNKNOWN: manifest unknown): not found on registry {}",
            inter.authority()
        )),
        "{msg}"
    );

    // A container_image artifact whose URL is not docker://.
    let result = run_module(
        "pull_from_intermediate_registry",
        pull_args(
            &inter,
            &buildset,
            json!([{"name": "org/app:latest", "url": "https://example.org/app.tar",
                    "metadata": {"type": "container_image", "repository": "org/app", "tag": "latest"}}]),
        ),
        false,
    );
    assert_eq!(
        result["msg"],
        "artifact 0 (\"org/app:latest\"): url: a https:// URL is not a container image; expected docker://"
    );

    // An unreachable intermediate registry: fails in bounded time, naming it.
    let port = crate::support::free_port();
    let mut args = pull_args(
        &inter,
        &buildset,
        json!([{"name": "org/app:latest",
                "url": format!("docker://127.0.0.1:{port}/org/app:{BUILD}_latest"),
                "metadata": {"type": "container_image", "repository": "org/app", "tag": "latest"}}]),
    );
    args["intermediate_registry"]["port"] = json!(port);
    let started = Instant::now();
    let result = run_module("pull_from_intermediate_registry", args, false);
    assert!(started.elapsed() < Duration::from_secs(15));
    let msg = result["msg"].as_str().unwrap();
    assert!(
        msg.contains(&format!("cannot connect to registry 127.0.0.1:{port}: ")),
        "{msg}"
    );

    // No buildset registry anywhere.
    let result = run_module(
        "pull_from_intermediate_registry",
        json!({
            "intermediate_registry": registry_facts(&inter),
            "zuul_artifacts": [artifact(&inter, "org/app", "latest")],
            "zuul": {"executor": {"result_data_file": "/nonexistent/results.json"}},
        }),
        false,
    );
    assert_eq!(
        result["msg"],
        "buildset_registry is not given and the result data file /nonexistent/results.json \
         holds none: pass buildset_registry or run run_buildset_registry first"
    );
}

#[test]
fn the_buildset_registry_is_found_in_the_result_data_file() {
    let inter = Distribution::start();
    let buildset = BuildsetServer::start();
    let image = random_image(Flavor::Docker, "amd64", &[1000]);
    speculative_images::client::runtime::block_on(crate::client_fixtures::push_image(
        &client_of(&inter),
        "org/app",
        Some(&format!("{BUILD}_latest")),
        &image,
    ))
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let results = work.path().join("results.json");
    std::fs::write(
        &results,
        serde_json::to_vec(
            &json!({"data": {}, "secret_data": {"buildset_registry": registry_facts(&buildset)}}),
        )
        .unwrap(),
    )
    .unwrap();
    let result = run_module(
        "pull_from_intermediate_registry",
        json!({
            "intermediate_registry": registry_facts(&inter),
            "zuul": {
                "artifacts": [artifact(&inter, "org/app", "latest")],
                "executor": {"result_data_file": results},
            },
        }),
        false,
    );
    assert_eq!(result["changed"], true, "{result}");
    assert_eq!(
        images_of(&result)[0]["digest"],
        image.manifest.digest.to_string()
    );
}

/// An intermediate registry that accepts connections and never answers
/// (over TLS: a handshake that never completes) fails pull and push within
/// seconds, naming it, as the modules' documentation promises.
#[test]
fn a_silent_intermediate_registry_fails_both_modules_within_seconds() {
    let inter = Distribution::start();
    let buildset = BuildsetServer::start();
    let silent = crate::transfer_support::SilentListener::start();
    let authority = format!("127.0.0.1:{}", silent.port);
    let image = random_image(Flavor::Docker, "amd64", &[1000]);
    speculative_images::client::runtime::block_on(crate::client_fixtures::push_image(
        &client_for(&buildset),
        "org/app",
        Some("latest"),
        &image,
    ))
    .unwrap();
    let mut facts = registry_facts(&inter);
    facts["host"] = json!("127.0.0.1");
    facts["port"] = json!(silent.port);
    let expected = format!("cannot connect to registry {authority}: operation timed out");

    let mut pull = pull_args(
        &inter,
        &buildset,
        json!([{"name": "org/app:latest",
                "url": format!("docker://{authority}/org/app:{BUILD}_latest"),
                "metadata": {"type": "container_image", "repository": "org/app", "tag": "latest"}}]),
    );
    pull["intermediate_registry"] = facts.clone();
    let push = json!({
        "buildset_registry": registry_facts(&buildset),
        "intermediate_registry": facts,
        "docker_images": [{"context": ".", "repository": "org/app", "tags": ["latest"]}],
        "zuul": {"build": BUILD, "change": "1000", "pipeline": "gate"},
        "zuul_success": true,
    });
    for (module, args) in [
        ("pull_from_intermediate_registry", pull),
        ("push_to_intermediate_registry", push),
    ] {
        let started = Instant::now();
        let result = run_module(module, args, false);
        let elapsed = started.elapsed();
        assert_eq!(result["failed"], true, "{module}: {result}");
        assert!(elapsed < Duration::from_secs(15), "{module}: {elapsed:?}");
        let msg = result["msg"].as_str().unwrap();
        assert!(msg.contains(&expected), "{module}: {msg}");
    }
}
