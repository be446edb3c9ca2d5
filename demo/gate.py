#!/usr/bin/env python3
"""The full speculative gating demo, on localhost, with the real playbooks.

Two changes: A changes ``example/app``; B, queued behind A, changes
``example/consumer`` (built ``FROM example/app``). The demo runs the seed's
jobs for both, through a simulated Zuul (``zuul_sim``), against real
services: Debian's docker-registry as the intermediate registry (TLS +
htpasswd, as the seed deploys it; ``DEMO_INTERMEDIATE=ours`` runs our own
server there instead, from examples/intermediate-registry/registry.yaml
as shipped), our buildset registry, and our registry
server in token mode as the "publication" registry standing in for Docker
Hub. The publication registry already holds a published ``example/app``
with other content, and the Docker daemon uses it as its docker.io mirror:
a job that did not speculate would get that one.

It prints each step and the digest at every hop, ends with a summary, and
exits non-zero when a hop's digest differs or B did not test A's image.
When a step stops the demo (a command fails, a service does not answer),
the summary still shows what was reached, and names that step.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zuul_sim import Executor, Job, artifacts_for_followers, item  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("DEMO_DIR", "/tmp/speculative-demo"))
BIN = REPO / "target/x86_64-unknown-linux-gnu/release/speculative-images"
INTERMEDIATE_PORT = int(os.environ.get("DEMO_INTERMEDIATE_PORT", "5050"))
# Which server is the site's intermediate registry: Debian's docker-registry
# (the seed's registry:2) or ours in site mode.
INTERMEDIATE = os.environ.get("DEMO_INTERMEDIATE", "distribution")
INTERMEDIATE_KINDS = ("distribution", "ours")
PUBLICATION = "localhost"  # port 443, so image names need no port
# The seed's buildset-registry playbooks take the role's default port.
BUILDSET_PORT = 5000
# Every fixed port the demo listens on, and what listens there.
PORTS = {
    INTERMEDIATE_PORT: "the intermediate registry (set DEMO_INTERMEDIATE_PORT to move it)",
    443: "the publication registry (image names carry no port, so it must be 443)",
    BUILDSET_PORT: "the buildset registries (the seed's playbooks use the role's default)",
}
DAEMON_JSON = Path("/etc/docker/daemon.json")

BOLD, GREEN, RED, DIM, RESET = "\033[1m", "\033[32m", "\033[31m", "\033[2m", "\033[0m"
if not sys.stdout.isatty():
    BOLD = GREEN = RED = DIM = RESET = ""


# The step the demo is in, as last announced by ``say``: named in the
# summary when a step stops the demo.
current_step = "starting"


def say(text: str) -> None:
    global current_step
    current_step = text
    print(f"{BOLD}==> {text}{RESET}", flush=True)


def info(text: str) -> None:
    print(f"    {text}", flush=True)


def sh(*cmd: str, env: dict | None = None, check: bool = True, quiet: bool = True) -> str:
    proc = subprocess.run(
        cmd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if quiet else None,
        text=True,
    )
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}")
    return proc.stdout.strip()


class Services:
    """The long-lived parts: intermediate and publication registries, and the
    Docker daemon's view of the published world. Undone by ``stop``."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.daemon_json_before: str | None = None
        # Whether daemon.json was changed (a start that failed earlier must
        # leave the daemon's settings alone).
        self.daemon_json_changed = False
        self.certs_dirs: list[Path] = []
        self.intermediate: dict = {}
        self.publication: dict = {}

    def start(self) -> None:
        self._intermediate()
        self._publication()
        self._published_world()

    def _intermediate(self) -> None:
        root = DEMO / "intermediate"
        password = secrets.token_hex(16)
        sh(str(REPO / "examples/intermediate-registry/make-credentials.sh"),
           "-d", str(root), "-p", password, "localhost", "127.0.0.1", "::1")
        log = open(root / "registry.log", "w")
        if INTERMEDIATE == "ours":
            say("Intermediate registry: our server in site mode, TLS + htpasswd"
                " (examples/intermediate-registry/registry.yaml)")
            config = site_config(root, INTERMEDIATE_PORT)
            # What systemd's StateDirectory= makes for the shipped unit.
            (root / "lib").mkdir(mode=0o700)
            (root / "registry.yaml").write_text(config)
            command = [str(BIN), "serve", "--config", str(root / "registry.yaml")]
        else:
            say("Intermediate registry: Debian docker-registry, TLS + htpasswd (the seed's registry:2)")
            config = (REPO / "examples/intermediate-registry/config.yml").read_text()
            config = config.replace("/var/registry", str(root))
            config = config.replace('":5000"', f'"127.0.0.1:{INTERMEDIATE_PORT}"')
            config = config.replace("level: info", "level: warn")
            (root / "config.yml").write_text(config)
            command = ["docker-registry", "serve", str(root / "config.yml")]
        self.procs.append(subprocess.Popen(
            command, stdout=log, stderr=log, env={"PATH": "/usr/bin:/bin"}))
        ca = (root / "certs/ca.crt").read_text()
        self.intermediate = {
            "host": "127.0.0.1", "port": INTERMEDIATE_PORT,
            "username": "zuul", "password": password, "cert": ca,
        }
        self._trust(f"127.0.0.1:{INTERMEDIATE_PORT}", ca)
        wait_tcp("127.0.0.1", INTERMEDIATE_PORT)
        info(f"https://127.0.0.1:{INTERMEDIATE_PORT}  user zuul  password ********")

    def _publication(self) -> None:
        say("Publication registry (stands in for Docker Hub): our server, Bearer token auth")
        root = DEMO / "publication"
        password = secrets.token_hex(16)
        sh(str(REPO / "examples/intermediate-registry/make-credentials.sh"),
           "-d", str(root), "-u", "publisher", "-p", password, "localhost", "127.0.0.1", "::1")
        bcrypt_hash = (root / "auth/htpasswd").read_text().strip().split(":", 1)[1]
        config = {
            "listen": ["127.0.0.1:443", "[::1]:443"],
            "tls": {"cert": str(root / "certs/domain.crt"), "key": str(root / "certs/domain.key")},
            "storage": str(root / "data"),
            "users": [{"username": "publisher", "password_bcrypt": bcrypt_hash}],
            "token_secret": secrets.token_hex(32),
            "anonymous_pull": True,
        }
        (root / "config.json").write_text(json.dumps(config))
        (root / "config.json").chmod(0o600)
        self.publication_log = root / "server.log"
        log = open(self.publication_log, "w")
        self.procs.append(subprocess.Popen(
            [str(BIN), "serve", "--config", str(root / "config.json")], stdout=log, stderr=log))
        ca = (root / "certs/ca.crt").read_text()
        self._trust(PUBLICATION, ca)
        wait_tcp("127.0.0.1", 443)
        self.publication = {"username": "publisher", "password": password, "cert": ca}
        info("https://localhost (port 443)  user publisher  password ********")

    def _published_world(self) -> None:
        say("Published world: example/app 1.0 on the publication registry, used as docker.io mirror")
        src = DEMO / "src/app-published"
        shutil.copytree(REPO / "demo/projects/app-published", src)
        shutil.copy("/bin/busybox", src / "busybox")
        tag = f"{PUBLICATION}/example/app:latest"
        sh("docker", "build", "-q", "-t", tag, str(src))
        docker_config = DEMO / "docker-config-publisher"
        docker_config.mkdir(mode=0o700)
        env = {"DOCKER_CONFIG": str(docker_config)}
        login = subprocess.run(
            ["docker", "login", "-u", "publisher", "--password-stdin", PUBLICATION],
            input=self.publication["password"], text=True, capture_output=True,
            env={**os.environ, **env})
        if login.returncode != 0:
            raise SystemExit(f"docker login to the publication registry failed: {login.stderr}")
        sh("docker", "push", "-q", tag, env=env)
        shutil.rmtree(docker_config)
        sh("docker", "rmi", tag)
        self.published_app = digest_of(f"{PUBLICATION}/example/app:latest", self.publication["cert"])
        info(f"published example/app:latest = {self.published_app}")
        self.daemon_json_before = DAEMON_JSON.read_text() if DAEMON_JSON.exists() else None
        settings = json.loads(self.daemon_json_before or "{}")
        settings["registry-mirrors"] = [f"https://{PUBLICATION}"]
        self.daemon_json_changed = True
        write_daemon_json(json.dumps(settings, indent=2) + "\n")
        reload_dockerd()
        info("docker pulls of docker.io images now go to the publication registry")

    def _trust(self, authority: str, ca: str) -> None:
        d = Path("/etc/docker/certs.d") / authority
        d.mkdir(parents=True, exist_ok=True)
        (d / "ca.crt").write_text(ca)
        self.certs_dirs.append(d)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for d in self.certs_dirs:
            shutil.rmtree(d, ignore_errors=True)
        if not self.daemon_json_changed:
            return
        if self.daemon_json_before is None:
            DAEMON_JSON.unlink(missing_ok=True)
        else:
            write_daemon_json(self.daemon_json_before)
        reload_dockerd()


def site_config(root: Path, port: int) -> str:
    """The shipped site configuration, moved under ``root`` and onto
    loopback ``port``; fails when the example no longer has a line the demo
    moves (so the example and the demo cannot drift apart)."""
    config = (REPO / "examples/intermediate-registry/registry.yaml").read_text()
    moves = [
        ('listen: ["0.0.0.0:5000", "[::]:5000"]', f'listen: ["127.0.0.1:{port}"]'),
        ("https://insecure-ci-registry.example.org:5000", f"https://127.0.0.1:{port}"),
        ("/var/registry", str(root)),
        ("/var/lib/speculative-images", str(root / "lib")),
    ]
    for old, new in moves:
        if old not in config:
            raise SystemExit(f"examples/intermediate-registry/registry.yaml no longer holds {old!r}")
        config = config.replace(old, new)
    return config


def write_daemon_json(text: str) -> None:
    DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
    tmp = DAEMON_JSON.with_suffix(".demo-tmp")
    tmp.write_text(text)
    os.replace(tmp, DAEMON_JSON)


def reload_dockerd() -> None:
    pid = Path("/var/run/docker.pid")
    if pid.exists():
        os.kill(int(pid.read_text().strip()), signal.SIGHUP)
        time.sleep(0.5)


def port_holder(port: int) -> str:
    """Who listens on TCP ``port``, as ``ss`` names it, or why we cannot tell."""
    import re

    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True)
    holders = {f"{name} (pid {pid})" for name, pid in re.findall(r'"([^"]+)",pid=(\d+)', out.stdout)}
    return ", ".join(sorted(holders)) or "a process ss cannot name"


def check_ports(ports: dict[int, str]) -> None:
    """Refuse to start when a port the demo needs is taken, naming the holder:
    a registry already there would answer the demo's clients with its own
    certificate, and the failure would show up deep inside a job."""
    import socket

    taken = []
    for port, purpose in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the servers bind: connections of an earlier run still in
            # TIME_WAIT on the port do not keep a new listener out.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                taken.append(f"port {port}, for {purpose}, is held by {port_holder(port)}")
    if taken:
        raise SystemExit("the demo cannot start:\n  " + "\n  ".join(taken))


def wait_tcp(host: str, port: int, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{host}:{port} did not answer within {timeout} s")


def digest_of(reference: str, ca: str, creds: tuple[str, str] | None = None) -> str:
    """The manifest digest of ``reference``, as skopeo sees it."""
    cert_dir = DEMO / "skopeo-certs" / reference.split("/")[0].replace(":", "_")
    cert_dir.mkdir(parents=True, exist_ok=True)
    (cert_dir / "ca.crt").write_text(ca)
    cmd = ["skopeo", "inspect", "--raw", "--cert-dir", str(cert_dir), f"docker://{reference}"]
    if creds:
        cmd[3:3] = ["--creds", f"{creds[0]}:{creds[1]}"]
    raw = subprocess.run(cmd, capture_output=True)
    if raw.returncode != 0:
        return f"(missing: {raw.stderr.decode().strip().splitlines()[-1][:80]})"
    import hashlib

    return "sha256:" + hashlib.sha256(raw.stdout).hexdigest()


def fresh_node() -> None:
    """Zuul gives every job a fresh node: forget locally built images."""
    for image in ("example/app", "example/consumer", f"{PUBLICATION}/example/consumer"):
        ids = sh("docker", "images", "-q", image, check=False)
        for line in sorted(set(ids.split())):
            sh("docker", "rmi", "-f", line, check=False)


def prepare_project(name: str) -> Path:
    src = DEMO / "src" / name
    shutil.copytree(REPO / "demo/projects" / name, src)
    shutil.copy("/bin/busybox", src / "busybox")
    return src


def main() -> int:
    if not BIN.exists():
        raise SystemExit(f"{BIN} is missing: run `make collection` first")
    if INTERMEDIATE not in INTERMEDIATE_KINDS:
        raise SystemExit(f"DEMO_INTERMEDIATE is {INTERMEDIATE!r}: it must be one of"
                         f" {', '.join(INTERMEDIATE_KINDS)}")
    check_ports(PORTS)
    if DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir(parents=True)
    env = {
        "ANSIBLE_LIBRARY": str(REPO / "tests/ansible/library"),
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_NOCOLOR": "1",
        "DEMO_PYTHON": sys.executable,
    }
    services = Services()
    executor = Executor(DEMO / "jobs", env, log=info)
    failures: list[str] = []
    summary: list[tuple[str, str, str]] = []
    timings: list = []  # every job started, in order (a paused one too)

    def run_job(*args, **kwargs):
        result = executor.run_job(*args, **kwargs)
        timings.append(result)
        return result

    stopped_by: str | None = None
    finished = False
    try:
        services.start()
        inter = services.intermediate
        pub_creds = services.publication

        buildset_job = Job(
            "yoursite-buildset-registry",
            pre_run=["playbooks/buildset-registry/pre.yaml"],
            run=["playbooks/buildset-registry/run.yaml"],
            post_run=["playbooks/buildset-registry/post.yaml"],
            secrets={"intermediate_registry": inter},
        )

        def build_job(images: list, extra: dict | None = None) -> Job:
            return Job(
                "yoursite-build-docker-image",
                pre_run=buildset_job.pre_run,
                run=["playbooks/docker-image/run.yaml"],
                post_run=buildset_job.post_run,
                variables={"docker_images": images, **(extra or {})},
                secrets=buildset_job.secrets,
            )

        # ---- Change A: producers only ------------------------------------
        say("Change A (example/app), first in the gate queue: buildset registry job, then its build job")
        app_src = prepare_project("app")
        a_images = [{"context": ".", "repository": "example/app", "tags": ["latest"]}]
        a_registry = run_job(buildset_job, "1001", "gate", app_src, pause=True)
        expect(a_registry.success, "A: buildset registry job", failures)
        a_build = run_job(build_job(a_images), "1001", "gate", app_src, parent=a_registry)
        expect(a_build.success, "A: build job", failures)
        a_buildset = a_registry.secret_data.get("buildset_registry", {})
        a_authority = f"{a_buildset.get('host', 'localhost')}:{a_buildset.get('port', BUILDSET_PORT)}"
        a_built = digest_of(f"{a_authority}/example/app:latest", a_buildset.get("cert", ""))
        info(f"A's example/app in A's buildset registry: {a_built}")
        summary.append(("A example/app", "A's buildset registry", a_built))
        a_artifacts = artifacts_for_followers(a_build, "example/app")
        for art in a_artifacts:
            info(f"artifact of A: {art['name']} -> {art['url']}")
        expect(bool(a_artifacts), "A: the build returned image artifacts", failures)
        a_inter_digest = (
            digest_of(a_artifacts[0]["url"].removeprefix("docker://"), inter["cert"],
                      (inter["username"], inter["password"]))
            if a_artifacts else "(none)"
        )
        info(f"A's example/app in the intermediate registry: {a_inter_digest}")
        summary.append(("A example/app", "intermediate registry", a_inter_digest))
        expect(a_inter_digest == a_built, "A's image arrived unchanged in the intermediate registry", failures)
        executor.resume(a_registry)
        expect(a_registry.success, "A: buildset registry job finished (post-run)", failures)
        stop_buildset_registry()
        fresh_node()

        # ---- Change B: producers and consumers, in the gate ---------------
        say("Change B (example/consumer, FROM example/app), queued behind A: gate pipeline")
        consumer_src = prepare_project("consumer")
        b_images = [{"context": ".", "repository": "example/consumer", "tags": ["latest"]}]
        publish_vars = {
            "docker_registry": PUBLICATION,
            "docker_registry_cert": pub_creds["cert"],
            "docker_credentials": {
                "username": pub_creds["username"],
                "password": pub_creds["password"],
                "repository": "^example/",
            },
        }
        # B has its own image build job (provides: docker-image), so real
        # Zuul gives B's jobs no artifacts of A: only the queue, zuul.items.
        b_ahead = [item("example/app", "1001")]
        before_pull = intermediate_log_mark()
        b_registry = run_job(
            buildset_job, "1002", "gate", consumer_src, ahead=b_ahead, pause=True)
        after_pull = intermediate_log_mark()
        expect(b_registry.success, "B: buildset registry job pulled A's image", failures)
        b_changes_ahead = b_registry.data.get("speculative_images", {}).get("changes_ahead", [])
        for change in b_changes_ahead:
            info(f"change ahead {change['change']},{change['patchset']} of {change['project']}: "
                 f"images from {change['source']}: {', '.join(change['images']) or '(none)'}")
        expect([c.get("source") for c in b_changes_ahead] == ["records"],
               "B got no artifacts of A from Zuul and found A's image by A's change record", failures)
        expect(not b_registry.data.get("zuul", {}).get("warnings"),
               "B's buildset registry job has no speculation warning", failures)
        # The pull step: lazy where the intermediate registry hands out
        # pull-only tokens (ours), a full copy where it cannot (distribution).
        b_pull = b_registry.data.get("speculative_images", {})
        pre_seconds = b_registry.playbook_seconds.get("pre-run playbooks/buildset-registry/pre.yaml")
        for image in b_pull.get("pulled", []):
            how = ("manifests copied, layers left to fetch on demand" if image["mode"] == "lazy"
                   else "every blob copied")
            info(f"pull step: {image['repository']}:{image['tag']} {image['mode']} ({how}), "
                 f"{image['digest']}"
                 + (f"; its playbook: {pre_seconds:.1f} s" if pre_seconds else ""))
        if b_pull.get("lazy_reason"):
            info(f"pull step not lazy: {b_pull['lazy_reason']}")
        if INTERMEDIATE == "ours":
            count, size = blobs_served("example/app", before_pull, after_pull)
            info(f"hop intermediate -> B's buildset registry, by the end of the pull step: "
                 f"{count} blob(s), {size} bytes (the config, and what the background "
                 f"prefetch had fetched by then)")
        want_mode = "lazy" if INTERMEDIATE == "ours" else "copy"
        expect([i.get("mode") for i in b_pull.get("pulled", [])] == [want_mode],
               f"B's pull step: {want_mode}", failures)
        b_buildset = b_registry.secret_data.get("buildset_registry", {})
        b_authority = f"{b_buildset.get('host', 'localhost')}:{b_buildset.get('port', BUILDSET_PORT)}"
        app_in_buildset = digest_of(f"{b_authority}/example/app:latest", b_buildset.get("cert", ""))
        info(f"example/app in B's buildset registry: {app_in_buildset}")
        summary.append(("A example/app", "B's buildset registry", app_in_buildset))
        expect(app_in_buildset == a_inter_digest, "A's image arrived unchanged in B's buildset registry", failures)

        upload_job = build_job(b_images, publish_vars)
        upload_job.name = "yoursite-upload-docker-image"
        upload_job.post_run = ["playbooks/docker-image/upload.yaml", *buildset_job.post_run]
        b_upload = run_job(upload_job, "1002", "gate", consumer_src, parent=b_registry, ahead=b_ahead)
        expect(b_upload.success, "B: upload job (build, push, publish temporary tag)", failures)
        consumer_repo = f"{PUBLICATION}/example/consumer"
        built = digest_of(f"{b_authority}/example/consumer:latest", b_buildset.get("cert", ""))
        info(f"B's example/consumer in its buildset registry: {built}")
        summary.append(("B example/consumer", "B's buildset registry", built))

        fresh_node()
        test_job = Job(
            "test-image",
            pre_run=["demo/playbooks/test-pre.yaml"],
            run=["demo/playbooks/test-image.yaml"],
        )
        b_test = run_job(test_job, "1002", "gate", consumer_src, parent=b_registry, ahead=b_ahead)
        expect(b_test.success, "B: test job ran the consumer", failures)
        if INTERMEDIATE == "ours":
            count, size = blobs_served("example/app", after_pull, intermediate_log_mark())
            info(f"hop intermediate -> B's buildset registry, after the pull step (prefetch and "
                 f"pull-through for B's build and test): {count} blob(s), {size} bytes")
        output = b_test.data.get("demo_test_output", "")
        for line in output.splitlines():
            info(f"test job saw: {line}")
        expect("change A" in output, "B's test saw A's speculative example/app, not the published 1.0", failures)
        tested = next((d.split("@", 1)[1] for d in b_test.data.get("demo_test_repo_digests", [])), "(none)")
        summary.append(("B example/consumer", "tested by B's test job", tested))
        expect(tested == built, "the image B tested is the one B built", failures)

        temp_tag = f"{consumer_repo}:change_1002_latest"
        uploaded = digest_of(temp_tag, pub_creds["cert"])
        summary.append(("B example/consumer", "publication, change_1002_latest", uploaded))
        expect(uploaded == tested, "the uploaded temporary tag is the tested image", failures)
        executor.resume(b_registry)
        expect(b_registry.success, "B: buildset registry job finished (post-run)", failures)
        stop_buildset_registry()
        fresh_node()

        # ---- B merges: promote --------------------------------------------
        say("B merged: promote pipeline moves latest to the tested manifest")
        promote_job = Job(
            "yoursite-promote-docker-image",
            run=["playbooks/docker-image/promote.yaml"],
            variables={"docker_images": b_images, **publish_vars},
        )
        b_promote = run_job(promote_job, "1002", "promote", consumer_src)
        expect(b_promote.success, "B: promote job", failures)
        final = digest_of(f"{consumer_repo}:latest", pub_creds["cert"])
        summary.append(("B example/consumer", "publication, latest (final)", final))
        expect(final == tested, "the final tag is exactly the image B tested", failures)
        gone = digest_of(temp_tag, pub_creds["cert"])
        expect(gone.startswith("(missing"), "the temporary tag was removed", failures)
        finished = True
    except (Exception, SystemExit) as error:
        # A step could not go on (sh() raises SystemExit): keep what was
        # reached for the summary, after the cleanup below.
        stopped_by = f"{current_step}: " + (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(":")
        print(f"    {RED}stopped{RESET} {error}", flush=True)
    finally:
        say("Cleaning up: registries stopped, docker daemon settings restored")
        if not finished:
            # Stopped in the middle of a job (or interrupted): its node goes away too.
            stop_buildset_registry()
            fresh_node()
        try:
            services.stop()
        except Exception as error:  # keep the summary; say what was left
            failures.append(f"cleaning up: {error}")

    print()
    say("Summary")
    width = max(len(s[1]) for s in summary) if summary else 10
    for image, hop, digest in summary:
        print(f"    {image:<20} {hop:<{width}}  {digest}")
    if not summary:
        print("    (no image reached a registry)")
    print()
    for job in timings:
        print(f"    {DIM}{job.change} {job.name:<32} {job.seconds:6.1f} s{RESET}")
    print()
    if stopped_by:
        print(f"    {RED}STOPPED{RESET} at step: {stopped_by}")
    if failures:
        for f in failures:
            print(f"    {RED}FAILED{RESET} {f}")
    if stopped_by or failures:
        return 1
    print(f"    {GREEN}every hop carried the same digest; B tested A's speculative image{RESET}")
    return 0


def intermediate_log_mark() -> int:
    """How many lines our intermediate registry has logged so far (its
    one line per request); 0 for distribution, which logs none here."""
    log = DEMO / "intermediate" / "registry.log"
    try:
        return len(log.read_text(errors="replace").splitlines())
    except OSError:
        return 0


def blobs_served(repository: str, start: int, end: int) -> tuple[int, int]:
    """Blob GETs of ``repository`` that our intermediate registry answered
    between log lines ``start`` and ``end``: how many, and the bytes sent."""
    served = re.compile(
        rf" GET /v2/{re.escape(repository)}/blobs/sha256:[0-9a-f]{{64}} 20[06] in=\d+ out=(\d+) ")
    log = DEMO / "intermediate" / "registry.log"
    lines = log.read_text(errors="replace").splitlines()[start:end]
    sizes = [int(m.group(1)) for m in map(served.search, lines) if m]
    return len(sizes), sum(sizes)


def stop_buildset_registry() -> None:
    """The buildset registry job's node goes away when the job ends."""
    sh("ansible", "localhost", "-c", "local", "-m", "speculative.images.run_buildset_registry",
       "-a", "state=absent", check=False)


def expect(ok: bool, what: str, failures: list[str]) -> None:
    mark = f"{GREEN}ok{RESET}" if ok else f"{RED}FAILED{RESET}"
    print(f"    [{mark}] {what}", flush=True)
    if not ok:
        failures.append(what)


if __name__ == "__main__":
    sys.exit(main())
