#!/usr/bin/env python3
"""Checks on what the repository ships for Zuul operators, as they would
meet it: the site jobs and the jobs this repository provides parse, name
playbooks that exist, keep the seed's requires/provides/pause; every role
is documented; the import graph of src/ has no cycle. Ends with "N passed,
N failed"."""

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
passed = failed = 0


def check(what: str, ok: bool, detail: str = "") -> None:
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what}" + (f": {detail}" if detail else ""))


class ZuulLoader(yaml.SafeLoader):
    """Zuul's YAML: secrets carry !encrypted/pkcs1-oaep values."""


ZuulLoader.add_constructor(
    "!encrypted/pkcs1-oaep", lambda loader, node: loader.construct_sequence(node)
)


def load_zuul(path: Path) -> list:
    return yaml.load(path.read_text(), Loader=ZuulLoader) or []


jobs = {}
secrets = {}
for path in sorted((REPO / "zuul.d").glob("*.yaml")):
    try:
        items = load_zuul(path)
        check(f"{path.relative_to(REPO)} parses", True)
    except yaml.YAMLError as e:
        check(f"{path.relative_to(REPO)} parses", False, str(e))
        continue
    for item in items:
        if "job" in item:
            jobs[item["job"]["name"]] = item["job"]
        if "secret" in item:
            secrets[item["secret"]["name"]] = item["secret"]

for name in (
    "yoursite-buildset-registry",
    "yoursite-build-docker-image",
    "yoursite-upload-docker-image",
    "yoursite-promote-docker-image",
    "promote-docker-image",
):
    check(f"job {name} is defined", name in jobs)

check(
    "the intermediate registry secret has host, port, username, password",
    set(secrets.get("yoursite-intermediate-registry", {}).get("data", {}))
    >= {"host", "port", "username", "password"},
)
bs = jobs.get("yoursite-buildset-registry", {})
check("buildset job requires docker-image", bs.get("requires") == "docker-image")
check(
    "buildset job gets the secret as intermediate_registry",
    any(s.get("name") == "intermediate_registry" for s in bs.get("secrets", [])),
)
check(
    "build job provides docker-image",
    jobs.get("yoursite-build-docker-image", {}).get("provides") == "docker-image",
)
# The seed's inheritance: build on the buildset job (its pre-run starts or
# joins the buildset registry, its post-run hands the images on), upload on
# build, promote on this repository's promote job (whose presence the
# nodeset check below requires).
for name, parent in (
    ("yoursite-build-docker-image", "yoursite-buildset-registry"),
    ("yoursite-upload-docker-image", "yoursite-build-docker-image"),
    ("yoursite-promote-docker-image", "promote-docker-image"),
):
    actual = jobs.get(name, {}).get("parent")
    check(f"job {name} has parent {parent}", actual == parent, f"parent is {actual!r}")
check(
    "promote-docker-image runs without nodes",
    jobs.get("promote-docker-image", {}).get("nodeset") == {"nodes": []},
)


def playbooks(job: dict, key: str) -> list:
    """The playbooks of a job's pre-run, run or post-run: Zuul takes a path,
    a {name: path} mapping or a list of either."""
    value = job.get(key)
    items = value if isinstance(value, list) else [value] if value else []
    return [item["name"] if isinstance(item, dict) else item for item in items]


check(
    "upload job's post-run is playbooks/docker-image/upload.yaml",
    "playbooks/docker-image/upload.yaml"
    in playbooks(jobs.get("yoursite-upload-docker-image", {}), "post-run"),
)
for name, job in sorted(jobs.items()):
    for key in ("pre-run", "run", "post-run"):
        for playbook in playbooks(job, key):
            check(f"{name} {key} {playbook} exists", (REPO / playbook).is_file())

run_yaml = yaml.safe_load((REPO / "playbooks/buildset-registry/run.yaml").read_text())
pause = run_yaml[0]["tasks"][0].get("zuul_return", {})
check("the buildset job pauses", pause.get("data", {}).get("zuul", {}).get("pause") is True)

for role in sorted(p for p in (REPO / "roles").iterdir() if p.is_dir()):
    for part in (
        "tasks/main.yml",
        "defaults/main.yml",
        "meta/main.yml",
        "meta/argument_specs.yml",
        "README.md",
    ):
        check(f"role {role.name} has {part}", (role / part).is_file())

# The import graph of src/ (scripts/import-graph.py): no two files of
# src/client/ import each other in a circle, nor do two rooms.
graph = subprocess.run(
    [sys.executable, str(REPO / "scripts/import-graph.py")],
    capture_output=True,
    text=True,
)
check(
    "src/ has no import cycle between files of client/ nor between rooms",
    graph.returncode == 0,
    graph.stdout.strip() + graph.stderr.strip(),
)


def demo_refuses_a_taken_port() -> str:
    """What the demo says when a port it needs is held (by us, here)."""
    import socket

    sys.path.insert(0, str(REPO / "demo"))
    import gate

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        try:
            gate.check_ports({port: "a registry of this check"})
        except SystemExit as refusal:
            return str(refusal)
    return "(the demo started)"


refusal = demo_refuses_a_taken_port()
check(
    "the demo refuses a port that is taken, naming the process holding it",
    "a registry of this check, is held by python" in refusal and "pid" in refusal,
    refusal,
)



def demo_takes_a_port_left_in_time_wait() -> str:
    """What the demo says of a port whose listener (with SO_REUSEADDR, as
    every server of the demo binds) is gone, its connections in TIME_WAIT:
    what a second demo run right after a first finds."""
    import socket
    import time

    sys.path.insert(0, str(REPO / "demo"))
    import gate

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server closes first: its side waits in TIME_WAIT
        time.sleep(0.1)
        client.close()
    try:
        gate.check_ports({port: "a registry of an earlier run"})
    except SystemExit as refusal:
        return str(refusal)
    return "free"


left = demo_takes_a_port_left_in_time_wait()
check(
    "the demo starts on a port an earlier run left with connections in TIME_WAIT",
    left == "free",
    left,
)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
