#!/usr/bin/env python3
"""A 1 GiB random blob pushed and pulled with curl over TLS, HTTP/1.1 and
HTTP/2, against our registry server, Debian's docker-registry (distribution
2.8, the seed's registry:2), zuul-registry (PyPI) and nginx serving and
receiving the same file (the loopback limit: no registry protocol, no
hashing); the peak RSS (VmHWM) of each server; then a load run (64
connections, 10 s) of manifest GET (wrk) and blob HEAD (ab) against ours
and distribution. Side by side in one run, BENCH_RUNS rounds (default 3);
prints medians, spreads and the ratios issue 12 sets targets for.

What is timed is what a user waits for: the wall time of the whole curl
processes of a push (POST for an upload session, then the monolithic
PUT ?digest=, and for zuul-registry the token request before them) or a
pull (one GET), TLS handshake and authentication included. Each server
starts on empty storage for each push, so no push finds the blob there.

Authentication is each registry's own, as a client meets it: Basic for
ours and for distribution (htpasswd, bcrypt), a bearer token from
/auth/token for zuul-registry, none for nginx. The load run is anonymous
on both sides (distribution without its auth section, ours with anonymous
pulls), so that it measures serving, not bcrypt.

Usage: registry_blob.py BINARY   (bench/registry-blob.sh calls it)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from statistics import median

BLOB_MIB = int(os.environ.get("BLOB_MIB", "1024"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
LOAD_SECONDS = int(os.environ.get("LOAD_SECONDS", "10"))
USER = "bench"
ZUUL_REGISTRY_VENV = os.environ.get(
    "ZUUL_REGISTRY_VENV", "/var/cache/speculative-bench/zuul-registry"
)
HERE = os.path.dirname(os.path.abspath(__file__))
DISTRIBUTION_EXAMPLE = os.path.join(
    HERE, "..", "..", "examples", "intermediate-registry", "config.yml"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    """Run a command; on failure exit naming the program and its stderr, not
    its arguments (they hold the bench user's password or token)."""
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode:
        sys.exit(f"{cmd[0]} failed (exit {done.returncode}): {done.stderr.strip()}")
    return done


class Work:
    """The bench's temporary tree: certificates, the password, the blob."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="registry-blob-bench.")
        self.password = base64.b32encode(os.urandom(15)).decode().lower()
        self._tls()
        self.htpasswd = self.path("htpasswd")
        with open(self.htpasswd, "w") as f:
            f.write(run("htpasswd", "-nbB", USER, self.password).stdout)
        self.bcrypt = open(self.htpasswd).read().strip().split(":", 1)[1]
        self.blob = self.path("blob")
        sha = hashlib.sha256()
        with open(self.blob, "wb") as f:
            for _ in range(BLOB_MIB):
                chunk = os.urandom(1 << 20)
                sha.update(chunk)
                f.write(chunk)
        self.digest = "sha256:" + sha.hexdigest()
        self.size = BLOB_MIB << 20

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def _tls(self) -> None:
        p = self.path
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=bench CA", "-keyout", p("ca.key"), "-out", p("ca.crt"))
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", p("domain.key"), "-out", p("domain.csr"))
        with open(p("ext.cnf"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        leaf = run("openssl", "x509", "-req", "-in", p("domain.csr"), "-CA", p("ca.crt"),
                   "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "1",
                   "-extfile", p("ext.cnf")).stdout
        with open(p("domain.crt"), "w") as f:
            f.write(leaf + open(p("ca.crt")).read())
        self.cert, self.key, self.ca = p("domain.crt"), p("domain.key"), p("ca.crt")


class Server:
    """One server process on a fresh port and fresh storage."""

    name = ""
    http2 = True

    def __init__(self, work: Work, tag: str, auth: bool = True) -> None:
        self.work = work
        self.port = free_port()
        self.root = work.path(f"{self.name}-{tag}")
        os.makedirs(self.root)
        self.auth = auth
        self.log = open(work.path(f"{self.name}-{tag}.log"), "w")
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.wait_ready()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def wait_ready(self) -> None:
        for _ in range(300):
            if self.proc.poll() is not None:
                sys.exit(f"{self.name} exited at start: see {self.log.name}")
            code = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                 self.work.ca, self.url + self.ready_path()],
                capture_output=True, text=True).stdout
            if code not in ("", "000"):
                return
            time.sleep(0.1)
        sys.exit(f"{self.name} did not start on {self.url}: see {self.log.name}")

    def ready_path(self) -> str:
        return "/v2/"

    def peak_rss_mib(self) -> float:
        """VmHWM of the server's processes (the largest, for nginx's workers)."""
        peak = 0
        pids = [self.proc.pid] + [
            int(p) for p in run("pgrep", "-s", str(self.proc.pid)).stdout.split()
        ]
        for pid in pids:
            try:
                status = open(f"/proc/{pid}/status").read()
            except OSError:
                continue
            m = re.search(r"VmHWM:\s+(\d+) kB", status)
            if m:
                peak = max(peak, int(m.group(1)))
        return peak / 1024

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- the client side, as curl arguments --------------------------------

    def curl_auth(self) -> list[str]:
        # Also where reads are anonymous (the load run): pushes never are.
        return ["-u", f"{USER}:{self.work.password}"]

    def push(self, http: str) -> float:
        """POST an upload session, PUT the blob with ?digest=; wall time."""
        t0 = time.monotonic()
        auth = self.curl_auth()
        headers = run("curl", "-sS", "--fail", http, "--cacert", self.work.ca, *auth,
                      "-X", "POST", "--data-binary", "", "-D", "-",
                      "-o", "/dev/null", f"{self.url}/v2/bench/blob/blobs/uploads/").stdout
        m = re.search(r"^location:\s*(\S+)", headers, re.I | re.M)
        if not m:
            sys.exit(f"{self.name}: no Location in the POST's answer:\n{headers}")
        location = m.group(1)
        if location.startswith("/"):
            location = self.url + location
        sep = "&" if "?" in location else "?"
        # --upload-file streams the file (--data-binary @file would read it whole).
        code = run("curl", "-sS", http, "--cacert", self.work.ca, *auth,
                   "-H", "Content-Type: application/octet-stream",
                   "--upload-file", self.work.blob, "-o", "/dev/null",
                   "-w", "%{http_code}", f"{location}{sep}digest={self.work.digest}").stdout
        elapsed = time.monotonic() - t0
        if code != "201":
            sys.exit(f"{self.name}: the blob PUT answered {code}")
        return elapsed

    def blob_url(self) -> str:
        return f"{self.url}/v2/bench/blob/blobs/{self.work.digest}"

    def pull(self, http: str) -> float:
        """GET the blob to /dev/null; wall time, size and protocol checked."""
        t0 = time.monotonic()
        out = run("curl", "-sS", "--fail", "-L", http, "--cacert", self.work.ca,
                  *self.curl_auth(), "-o", "/dev/null",
                  "-w", "%{size_download} %{http_version}", self.blob_url()).stdout
        elapsed = time.monotonic() - t0
        size, version = out.split()
        if int(size) != self.work.size:
            sys.exit(f"{self.name}: pulled {size} bytes, not {self.work.size}")
        want = "2" if http == "--http2" else "1.1"
        if version != want:
            sys.exit(f"{self.name}: curl spoke HTTP/{version}, not HTTP/{want}")
        return elapsed


class Ours(Server):
    name = "ours"
    binary = ""  # the speculative-images binary, from the command line

    def command(self) -> list[str]:
        config = self.work.path(f"{os.path.basename(self.root)}.json")
        with open(config, "w") as f:
            json.dump({
                "listen": [f"127.0.0.1:{self.port}"],
                "tls": {"cert": self.work.cert, "key": self.work.key},
                "storage": self.root,
                "users": [{"username": USER, "password_bcrypt": self.work.bcrypt}],
                "token_secret": os.urandom(32).hex(),
                "anonymous_pull": not self.auth,
            }, f)
        return [self.binary, "serve", "--config", config]


class Distribution(Server):
    name = "distribution"

    def command(self) -> list[str]:
        text = open(DISTRIBUTION_EXAMPLE).read()
        for old, new in [
            ("rootdirectory: /var/registry/data", f"rootdirectory: {self.root}"),
            ("certificate: /var/registry/certs/domain.crt", f"certificate: {self.work.cert}"),
            ("key: /var/registry/certs/domain.key", f"key: {self.work.key}"),
            ("path: /var/registry/auth/htpasswd", f"path: {self.work.htpasswd}"),
            ('addr: ":5000"', f'addr: "127.0.0.1:{self.port}"'),
            ("level: info", "level: warn"),
        ]:
            if old not in text:
                sys.exit(f"{DISTRIBUTION_EXAMPLE} no longer holds {old!r}")
            text = text.replace(old, new)
        if not self.auth:
            text = text[: text.index("auth:")]
        config = self.work.path(f"{os.path.basename(self.root)}.yml")
        with open(config, "w") as f:
            f.write(text)
        return ["docker-registry", "serve", config]


class ZuulRegistry(Server):
    name = "zuul-registry"
    http2 = False  # cherrypy speaks HTTP/1.1 only

    def command(self) -> list[str]:
        config = self.work.path(f"{os.path.basename(self.root)}.yaml")
        with open(config, "w") as f:
            json.dump({"registry": {
                "address": "127.0.0.1", "port": self.port, "public-url": self.url,
                "tls-cert": self.work.cert, "tls-key": self.work.key,
                "secret": os.urandom(16).hex(),
                "users": [{"name": USER, "pass": self.work.password, "access": "write"}],
                "storage": {"driver": "filesystem", "root": self.root},
            }}, f)  # JSON is YAML
        return [os.path.join(ZUUL_REGISTRY_VENV, "bin", "zuul-registry"), "-c", config, "serve"]

    def curl_auth(self) -> list[str]:
        # zuul-registry takes bearer tokens only: ask for one as docker does.
        token = json.loads(run(
            "curl", "-sS", "--fail", "--cacert", self.work.ca, "-u", f"{USER}:{self.work.password}",
            f"{self.url}/auth/token?scope=repository:bench/blob:pull,push").stdout)["token"]
        return ["-H", f"Authorization: Bearer {token}"]


class Nginx(Server):
    """The same file over TLS with no registry in the way: PUT (WebDAV) and GET."""

    name = "nginx"

    def command(self) -> list[str]:
        config = self.work.path(f"{os.path.basename(self.root)}.conf")
        tmp = self.root + ".tmp"
        os.makedirs(tmp)
        with open(config, "w") as f:
            f.write(f"""
user root;
worker_processes 1;
daemon off;
pid {self.root}.pid;
error_log {self.root}.error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{self.port} ssl http2;
    ssl_certificate {self.work.cert};
    ssl_certificate_key {self.work.key};
    root {self.root};
    client_max_body_size 0;
    location / {{ dav_methods PUT; create_full_put_path on; }}
  }}
}}
""")
        return ["nginx", "-c", config]

    def ready_path(self) -> str:
        return "/"

    def push(self, http: str) -> float:
        t0 = time.monotonic()
        code = run("curl", "-sS", http, "--cacert", self.work.ca, "-T", self.work.blob,
                   "-o", "/dev/null", "-w", "%{http_code}", self.blob_url()).stdout
        elapsed = time.monotonic() - t0
        if code not in ("201", "204"):
            sys.exit(f"nginx: the PUT answered {code}")
        return elapsed

    def blob_url(self) -> str:
        return f"{self.url}/{self.work.digest.replace(':', '-')}"


# --- the load run -----------------------------------------------------------

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def put_small_image(server: Server) -> str:
    """A config and one small layer under bench/small:latest; the layer's digest."""
    blobs = {}
    for label, data in (("config", b'{"architecture":"amd64","os":"linux"}'),
                        ("layer", os.urandom(4096))):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = server.work.path(f"{label}.bin")
        open(path, "wb").write(data)
        headers = run("curl", "-sS", "--fail", "--cacert", server.work.ca, "-X", "POST",
                      "--data-binary", "", *server.curl_auth(), "-D", "-", "-o", "/dev/null",
                      f"{server.url}/v2/bench/small/blobs/uploads/").stdout
        location = re.search(r"^location:\s*(\S+)", headers, re.I | re.M).group(1)
        if location.startswith("/"):
            location = server.url + location
        sep = "&" if "?" in location else "?"
        run("curl", "-sS", "--fail", "--cacert", server.work.ca, "-X", "PUT", *server.curl_auth(),
            "-H", "Content-Type: application/octet-stream", "--data-binary", f"@{path}",
            f"{location}{sep}digest={digest}")
        blobs[label] = (digest, len(data))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": blobs["config"][0], "size": blobs["config"][1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": blobs["layer"][0], "size": blobs["layer"][1]}],
    })
    run("curl", "-sS", "--fail", "--cacert", server.work.ca, "-X", "PUT", *server.curl_auth(),
        "-H", f"Content-Type: {MANIFEST_TYPE}", "--data-binary", manifest,
        f"{server.url}/v2/bench/small/manifests/latest")
    return blobs["layer"][0]


def wrk_get(url: str, accept: str) -> dict:
    """wrk: 2 threads, 64 keep-alive connections, GET."""
    out = run("wrk", "-t2", "-c64", f"-d{LOAD_SECONDS}s", "--latency",
              "-H", f"Accept: {accept}", url).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale, "errors": errors}


def ab_head(url: str) -> dict:
    """ApacheBench: 64 keep-alive connections, HEAD (wrk cannot: it waits
    for the body a HEAD answer's Content-Length announces)."""
    out = run("ab", "-k", "-i", "-c64", f"-t{LOAD_SECONDS}", "-n10000000", url).stdout
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))
    p99 = float(re.search(r"^\s+99%\s+(\d+)", out, re.M).group(1))
    errors = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return {"rps": rps, "p99_ms": p99, "errors": errors}


# --- the report ---------------------------------------------------------------


def summary(values: list[float]) -> tuple[float, float]:
    """The median and the spread, ±(max - min)/2 as a share of the median."""
    mid = median(values)
    return mid, (max(values) - min(values)) / 2 / mid if mid else 0.0


def fmt(values: list[float] | None, unit: str = "s") -> str:
    if not values:
        return f"{'n/a':>16}"
    mid, spread = summary(values)
    return f"{mid:9.2f}{unit} ±{spread * 100:3.0f}%"


def main() -> None:
    Ours.binary = sys.argv[1]
    work = Work()
    print(f"blob: {BLOB_MIB} MiB random, {work.digest}; {RUNS} rounds", file=sys.stderr)
    servers = [Ours, Distribution, ZuulRegistry, Nginx]
    times: dict[tuple[str, str, str], list[float]] = {}
    rss: dict[str, list[float]] = {}
    load: dict[tuple[str, str], list[dict]] = {}
    try:
        for round_ in range(RUNS):
            # Alternate who goes first, so no one always meets a cold page cache.
            order = servers if round_ % 2 == 0 else servers[::-1]
            for cls in order:
                peak = 0.0
                for http in ("--http1.1", "--http2"):
                    if http == "--http2" and not cls.http2:
                        continue
                    server = cls(work, f"{round_}{http[6:]}")
                    try:
                        # Nobody pays for the writeback of what came before
                        # (the blob's creation, a server that does not fsync).
                        os.sync()
                        push = server.push(http)
                        pull = server.pull(http)
                        peak = max(peak, server.peak_rss_mib())
                    finally:
                        server.stop()
                    proto = "h2" if http == "--http2" else "h1"
                    times.setdefault((cls.name, "push", proto), []).append(push)
                    times.setdefault((cls.name, "pull", proto), []).append(pull)
                    print(f"round {round_ + 1}: {cls.name} {proto} push {push:.2f}s "
                          f"pull {pull:.2f}s", file=sys.stderr)
                rss.setdefault(cls.name, []).append(peak)
            for cls in (Ours, Distribution) if round_ % 2 == 0 else (Distribution, Ours):
                server = cls(work, f"{round_}load", auth=False)
                try:
                    layer = put_small_image(server)
                    for what, result in (
                        ("manifest GET", wrk_get(f"{server.url}/v2/bench/small/manifests/latest",
                                                 MANIFEST_TYPE)),
                        ("blob HEAD", ab_head(f"{server.url}/v2/bench/small/blobs/{layer}")),
                    ):
                        load.setdefault((cls.name, what), []).append(result)
                        print(f"round {round_ + 1}: {cls.name} {what} {result}", file=sys.stderr)
                finally:
                    server.stop()
    finally:
        shutil.rmtree(work.dir, ignore_errors=True)

    names = [cls.name for cls in servers]
    print(f"\n{BLOB_MIB} MiB blob over TLS with curl, wall time per command; "
          f"medians of {RUNS} runs, ± spread")
    print(f"{'':10}" + "".join(f"{n:>17}" for n in names))
    for op in ("push", "pull"):
        for proto in ("h1", "h2"):
            row = f"{op} {proto:5}  "
            row += "".join(fmt(times.get((n, op, proto))) for n in names)
            print(row)
    print(f"{'peak RSS':10}" + "".join(fmt(rss[n], "M") for n in names))

    def ratio(a: str, b: str, op: str, proto: str) -> str:
        return f"{median(times[(a, op, proto)]) / median(times[(b, op, proto)]):.2f}"

    print("\nratios (ours / other; below 1 is faster), with issue 12's targets")
    print(f"  receive, h1: ours/distribution {ratio('ours', 'distribution', 'push', 'h1')} "
          f"(target <= 0.5), ours/zuul-registry {ratio('ours', 'zuul-registry', 'push', 'h1')}")
    print(f"  receive, h2: ours/distribution {ratio('ours', 'distribution', 'push', 'h2')}")
    print(f"  serve, h1:   ours/nginx {ratio('ours', 'nginx', 'pull', 'h1')} (target <= 1.1), "
          f"ours/distribution {ratio('ours', 'distribution', 'pull', 'h1')}")
    print(f"  serve, h2:   ours/distribution {ratio('ours', 'distribution', 'pull', 'h2')} "
          f"(target <= 1.0), ours/nginx {ratio('ours', 'nginx', 'pull', 'h2')}")
    print(f"  peak RSS:    ours {median(rss['ours']):.1f} MiB (target < 64)")

    print(f"\nload over TLS, anonymous, 64 keep-alive connections for {LOAD_SECONDS}s (manifest GET"
          f" with wrk -t2, blob HEAD with ab); medians of {RUNS} runs, errors summed")
    print(f"{'':14}{'ours req/s':>12}{'p99':>9}{'err':>6}"
          f"{'distribution':>14}{'p99':>9}{'err':>6}{'ratio':>7}")
    for what in ("manifest GET", "blob HEAD"):
        o, d = load[("ours", what)], load[("distribution", what)]
        o_rps, d_rps = median(r["rps"] for r in o), median(r["rps"] for r in d)
        print(f"{what:14}{o_rps:12.0f}{median(r['p99_ms'] for r in o):7.1f}ms"
              f"{sum(r['errors'] for r in o):6d}{d_rps:14.0f}"
              f"{median(r['p99_ms'] for r in d):7.1f}ms{sum(r['errors'] for r in d):6d}"
              f"{o_rps / d_rps:7.2f}")
    print("  (ratio: ours/distribution requests per second; target >= 1 with no errors)")


if __name__ == "__main__":
    main()
