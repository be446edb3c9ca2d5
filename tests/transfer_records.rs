//! Change records (defect 4 of issue 9): in real Zuul a change that has
//! its own image build job gets no `zuul.artifacts` of the changes ahead.
//! `push_to_intermediate_registry` leaves a record per change, patchset and
//! job in the intermediate registry; `pull_from_intermediate_registry`
//! finds the changes ahead in `zuul.items` and pulls what their records
//! name. Run as Ansible runs the modules, with Debian's docker-registry
//! (distribution 2.8, the seed's `registry:2`) and our own registry server
//! each as the intermediate registry, so both are shown to accept the
//! record's manifest. Also: artifacts in zuul-jobs' shape.

use serde_json::{json, Value};

use speculative_images::client::runtime::block_on;
use speculative_images::client::Registry;
use speculative_images::zuul::records::{RECORDS_REPOSITORY, RECORD_MEDIA_TYPE};

use crate::client_fixtures::{push_image, random_image, Flavor};
use crate::support::buildset::BuildsetServer;
use crate::support::distribution::Distribution;
use crate::transfer_support::{client_for, registry_facts, run_module, TestRegistry};

const HOST: &str = "review.example.org";

fn project(name: &str) -> Value {
    json!({
        "name": name,
        "short_name": name.rsplit('/').next().unwrap(),
        "canonical_hostname": HOST,
        "canonical_name": format!("{HOST}/{name}"),
        "src_dir": format!("src/{HOST}/{name}"),
    })
}

/// One of `zuul.items`, as Zuul 14 gives it.
fn item(name: &str, change: &str, patchset: &str) -> Value {
    json!({
        "project": project(name),
        "change": change,
        "patchset": patchset,
        "branch": "main",
        "change_url": format!("https://{HOST}/{change}"),
        "commit_id": "0123456789abcdef0123456789abcdef01234567",
        "topic": null,
    })
}

/// The `zuul` variable of a job of change `change` of `name`.
fn zuul(name: &str, change: &str, build: &str, pipeline: &str, ahead: &[Value]) -> Value {
    let mut items = ahead.to_vec();
    items.push(item(name, change, "1"));
    json!({
        "tenant": "example",
        "pipeline": pipeline,
        "project": project(name),
        "change": change,
        "patchset": "1",
        "build": build,
        "buildset": format!("bs-{build}"),
        "job": "build-image",
        "items": items,
    })
}

/// Change A's build job: an image in A's buildset registry, pushed with
/// the module to `inter` under A's `zuul`. Returns the push result and the
/// image's digest.
fn change_a_pushes(inter: &impl TestRegistry, pipeline: &str) -> (Value, String) {
    let a_buildset = BuildsetServer::start();
    let image = random_image(Flavor::Oci, "amd64", &[50_000, 100]);
    block_on(push_image(
        &client_for(&a_buildset),
        "example/app",
        Some("latest"),
        &image,
    ))
    .unwrap();
    let args = json!({
        "buildset_registry": registry_facts(&a_buildset),
        "intermediate_registry": registry_facts(inter),
        "docker_images": [{"repository": "example/app", "tags": ["latest"]}],
        "zuul": zuul("example/app", "1001", "a0a0", pipeline, &[]),
    });
    let pushed = run_module("push_to_intermediate_registry", args.clone(), false);
    assert_eq!(pushed["failed"], false, "{pushed}");
    let again = run_module("push_to_intermediate_registry", args, false);
    assert_eq!(
        again["changed"], false,
        "a second push changes nothing: {again}"
    );
    assert_eq!(again["change_record"]["changed"], false, "{again}");
    assert_eq!(
        again["change_record"]["digest"],
        pushed["change_record"]["digest"]
    );
    (pushed, image.manifest.digest.to_string())
}

/// B's buildset registry job: no artifacts of A, only the queue.
fn change_b_pulls(inter: &impl TestRegistry, buildset: &BuildsetServer, pipeline: &str) -> Value {
    run_module(
        "pull_from_intermediate_registry",
        json!({
            "buildset_registry": registry_facts(buildset),
            "intermediate_registry": registry_facts(inter),
            "zuul": zuul("example/consumer", "1002", "b0b0", pipeline,
                         &[item("example/app", "1001", "1")]),
        }),
        false,
    )
}

fn records_round_trip(inter: &impl TestRegistry) {
    let (pushed, digest) = change_a_pushes(inter, "gate");
    let record = &pushed["change_record"];
    assert_eq!(record["repository"], RECORDS_REPOSITORY, "{pushed}");
    assert_eq!(record["changed"], true);
    let tag = record["tag"].as_str().unwrap();
    let (prefix, job) = tag.split_once('-').unwrap();
    assert_eq!((prefix.len(), job.len()), (40, 16), "{tag}");

    // What the registry holds: an OCI manifest naming the record as its
    // config, no layers; the config is exactly what A returned to Zuul.
    let client = client_for(inter);
    let repo = RECORDS_REPOSITORY.parse().unwrap();
    let manifest = block_on(client.manifest_get(&repo, &tag.parse().unwrap()))
        .unwrap()
        .unwrap();
    assert_eq!(manifest.digest.to_string(), record["digest"]);
    let doc: Value = serde_json::from_slice(&manifest.bytes).unwrap();
    assert_eq!(doc["config"]["mediaType"], RECORD_MEDIA_TYPE);
    assert_eq!(doc["layers"], json!([]));
    let config_digest = doc["config"]["digest"].as_str().unwrap().parse().unwrap();
    let config = block_on(async {
        use futures_util::StreamExt as _;
        let mut stream = client.blob_get(&repo, &config_digest).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok::<_, speculative_images::client::Error>(bytes)
    })
    .unwrap()
    .unwrap();
    let config: Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["project"], format!("{HOST}/example/app"));
    assert_eq!(
        (&config["change"], &config["patchset"], &config["job"]),
        (&json!("1001"), &json!("1"), &json!("build-image"))
    );
    assert_eq!(
        (&config["build"], &config["buildset"], &config["pipeline"]),
        (&json!("a0a0"), &json!("bs-a0a0"), &json!("gate"))
    );
    assert!(config["pushed_at_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(config["artifacts"], pushed["artifacts"]);

    // B, behind A in the gate, gets no zuul.artifacts and still receives
    // A's image, same digest, found by A's record.
    let b_buildset = BuildsetServer::start();
    let pulled = change_b_pulls(inter, &b_buildset, "gate");
    assert_eq!(pulled["failed"], false, "{pulled}");
    assert_eq!(pulled["changed"], true);
    assert_eq!(pulled["images"][0]["repository"], "example/app", "{pulled}");
    assert_eq!(pulled["images"][0]["digest"], digest.as_str());
    assert_eq!(pulled["speculation_warnings"], json!([]));
    let ahead = &pulled["changes_ahead"];
    assert_eq!(ahead.as_array().unwrap().len(), 1, "{pulled}");
    assert_eq!(ahead[0]["source"], "records");
    assert_eq!(ahead[0]["change"], "1001");
    assert_eq!(ahead[0]["project"], format!("{HOST}/example/app"));
    assert_eq!(ahead[0]["images"], json!(["example/app:latest"]));
    assert_eq!(ahead[0]["records"][0]["tag"], tag);
    let there = block_on(
        client_for(&b_buildset)
            .manifest_head(&"example/app".parse().unwrap(), &"latest".parse().unwrap()),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        there
            .expect("A's image in B's buildset registry")
            .to_string(),
        digest
    );

    let again = change_b_pulls(inter, &b_buildset, "gate");
    assert_eq!(again["changed"], false, "{again}");

    // A record of the same change in another pipeline is not this gate's:
    // B in check finds nothing of A, and says so.
    let check_buildset = BuildsetServer::start();
    let check = change_b_pulls(inter, &check_buildset, "check");
    assert_eq!(check["failed"], false, "{check}");
    assert_eq!(check["images"], json!([]));
    assert_eq!(check["changes_ahead"][0]["source"], "nothing");
    let warnings = check["speculation_warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{check}");
    assert!(
        warnings[0].as_str().unwrap().starts_with(&format!(
            "change 1001,1 of {HOST}/example/app is ahead of this one, but neither"
        )),
        "{check}"
    );
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("(it has records of pipeline(s) example/gate, not of this one: not used)"),
        "{check}"
    );
    assert_eq!(
        check["warnings"],
        json!(warnings),
        "also an Ansible warning"
    );
}

#[test]
fn records_in_distribution_2_8_reach_a_change_without_artifacts() {
    records_round_trip(&Distribution::start());
}

#[test]
fn records_in_our_registry_server_reach_a_change_without_artifacts() {
    records_round_trip(&BuildsetServer::start());
}

#[test]
fn artifacts_from_zuul_come_first_and_records_are_not_read() {
    let inter = Distribution::start();
    let (pushed, digest) = change_a_pushes(&inter, "gate");
    let buildset = BuildsetServer::start();
    let mut zuul = zuul(
        "example/consumer",
        "1002",
        "b0b0",
        "gate",
        &[item("example/app", "1001", "1")],
    );
    // As Zuul passes them: the keys it adds (project is the name).
    let artifacts: Vec<Value> = pushed["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let mut a = a.clone();
            let map = a.as_object_mut().unwrap();
            map.insert("project".into(), json!("example/app"));
            map.insert("change".into(), json!("1001"));
            map.insert("patchset".into(), json!("1"));
            map.insert("job".into(), json!("build-image"));
            a
        })
        .collect();
    zuul["artifacts"] = json!(artifacts);
    let before = inter.requests().len();
    let pulled = run_module(
        "pull_from_intermediate_registry",
        json!({
            "buildset_registry": registry_facts(&buildset),
            "intermediate_registry": registry_facts(&inter),
            "zuul": zuul,
        }),
        false,
    );
    assert_eq!(
        pulled["changes_ahead"][0]["source"], "artifacts",
        "{pulled}"
    );
    assert_eq!(pulled["images"][0]["digest"], digest.as_str());
    let requests = inter.requests()[before..].join("\n");
    assert!(!requests.contains(RECORDS_REPOSITORY), "{requests}");
}

#[test]
fn a_failed_job_leaves_no_record() {
    let inter = Distribution::start();
    let buildset = BuildsetServer::start();
    let skipped = run_module(
        "push_to_intermediate_registry",
        json!({
            "buildset_registry": registry_facts(&buildset),
            "intermediate_registry": registry_facts(&inter),
            "docker_images": [{"repository": "example/app"}],
            "zuul": zuul("example/app", "1001", "a0a0", "gate", &[]),
            "zuul_success": false,
        }),
        false,
    );
    assert_eq!(skipped["changed"], false, "{skipped}");
    assert!(skipped.get("change_record").is_none(), "{skipped}");
    let tags = block_on(client_for(&inter).tags_list(&RECORDS_REPOSITORY.parse().unwrap()))
        .unwrap()
        .unwrap();
    assert!(tags.is_empty(), "{tags:?}");
}

#[test]
fn artifacts_in_zuul_jobs_shape_are_pulled() {
    // zuul-jobs' pull role reads url, metadata.type, metadata.repository
    // (docker.io/ removed) and metadata.tag, which YAML may make a number;
    // it never needs a name. Given through the zuul variable, as Zuul does.
    let inter = Distribution::start();
    let buildset = BuildsetServer::start();
    let image = random_image(Flavor::Docker, "amd64", &[20_000]);
    block_on(push_image(
        &client_for(&inter),
        "docker.io/org/img",
        Some("f00d_123"),
        &image,
    ))
    .unwrap();
    let pulled = run_module(
        "pull_from_intermediate_registry",
        json!({
            "buildset_registry": registry_facts(&buildset),
            "intermediate_registry": registry_facts(&inter),
            "zuul": {"artifacts": [{
                "url": format!("docker://{}/docker.io/org/img:f00d_123", inter.authority()),
                "metadata": {"type": "container_image", "repository": "docker.io/org/img", "tag": 123},
                "project": "org/img", "change": "7", "patchset": "2", "job": "build",
            }]},
        }),
        false,
    );
    assert_eq!(pulled["failed"], false, "{pulled}");
    assert_eq!(pulled["images"][0]["repository"], "org/img");
    assert_eq!(pulled["images"][0]["tag"], "123");
    assert_eq!(
        pulled["images"][0]["digest"],
        image.manifest.digest.to_string()
    );

    // What is really wrong is named: the field and the problem.
    let bad = run_module(
        "pull_from_intermediate_registry",
        json!({
            "buildset_registry": registry_facts(&buildset),
            "intermediate_registry": registry_facts(&inter),
            "zuul_artifacts": [{
                "url": format!("docker://{}/org/img:1_x", inter.authority()),
                "metadata": {"type": "container_image", "repository": "org/img", "tag": ["x"]},
            }],
        }),
        false,
    );
    assert_eq!(bad["failed"], true);
    assert_eq!(
        bad["msg"],
        "artifact 0: metadata.tag is a list, expected a string"
    );
}
