"""Helpers of deploy/smoke.sh (standard library only: it runs on the host's Python 3.11+).

    python3 deploy/smoke/smoke.py requirements PYPROJECT      what the image's pip installs
    python3 deploy/smoke/smoke.py index WHEELS INDEX          a PEP 503 index of WHEELS
    python3 deploy/smoke/smoke.py mirrors SUITE               apt's mirror for SUITE, security's
    python3 deploy/smoke/smoke.py layers COLD REBUILT         what a source-only rebuild added
    python3 deploy/smoke/smoke.py stack                       the checks on the running stack

`stack` reads SMOKE_PROJECT, SMOKE_API_PORT, GANSERVE_API_KEYS, POSTGRES_PASSWORD,
REDIS_PASSWORD, SMOKE_OUT and SMOKE_JOB_STEPS from the environment. Each check prints one
line; the first that fails raises SmokeFailure, which exits 1 with what was seen.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


class SmokeFailure(Exception):
    pass


def say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 (a command-line tool)


# --- requirements, wheel index, apt mirrors ------------------------------------------------


def requirements(pyproject: Path) -> list[str]:
    """The dependencies (with the `postgres` extra) and the build backend, as in the image."""
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    return [
        *project["dependencies"],
        *project["optional-dependencies"]["postgres"],
        *data["build-system"]["requires"],
    ]


def canonical(name: str) -> str:
    """PEP 503's normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def build_index(wheels: Path, index: Path) -> int:
    """index/simple/<project>/<wheel> as symbolic links: what pip's --index-url reads."""
    simple = index / "simple"
    if simple.exists():
        for link in simple.glob("*/*"):
            link.unlink()
        for folder in simple.iterdir():
            folder.rmdir()
    count = 0
    for wheel in sorted(wheels.glob("*.whl")):
        folder = simple / canonical(wheel.name.split("-")[0])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / wheel.name).symlink_to(wheel.resolve())
        count += 1
    return count


def apt_mirrors(suite: str) -> tuple[str, str]:
    """The URIs apt is configured with for SUITE and SUITE-security (deb822 or one-line)."""
    found: dict[str, str] = {}
    sources = Path("/etc/apt")
    for path in [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = {
                    key.strip().lower(): value.strip()
                    for key, _, value in (
                        line.partition(":") for line in stanza.splitlines() if ":" in line
                    )
                    if not key.lstrip().startswith("#")
                }
                if "deb" not in fields.get("types", "").split() or not fields.get("uris"):
                    continue
                for name in fields.get("suites", "").split():
                    found.setdefault(name, fields["uris"].split()[0])
        elif path.suffix == ".list":
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb":
                    found.setdefault(words[2], words[1])
    main = found.get(suite, "http://deb.debian.org/debian")
    security = found.get(f"{suite}-security", "http://deb.debian.org/debian-security")
    return main.rstrip("/"), security.rstrip("/")


# --- images ----------------------------------------------------------------------------------


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=300
    ).stdout


def layer_report(cold: str, rebuilt: str, max_new_mb: float = 20.0) -> None:
    """A source-only rebuild must share every filesystem layer but the last, a small one."""
    a = json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", cold))
    b = json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", rebuilt))
    # Same count, one difference: ganserve's layer (an empty WORKDIR layer may follow it).
    changed = [i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y]
    say(
        f"filesystem layers: {len(b)} in the rebuilt image, {len(b) - len(changed)} identical "
        f"to the cold build's, {len(changed)} new"
    )
    if len(a) != len(b) or len(changed) != 1:
        raise SmokeFailure(f"a source-only rebuild should change one layer: {a} {b}")
    rows = [
        json.loads(line)
        for line in docker("history", "--no-trunc", "--format", "{{json .}}", rebuilt).splitlines()
    ]
    sized = [row for row in rows if _bytes(row["Size"]) > 0]
    newest = sized[0]
    size_mb = _bytes(newest["Size"]) / 1e6
    say(f"the new layer: {newest['Size']} ({size_mb:.1f} MB): {newest['CreatedBy'][:90]}")
    if "pip install" not in newest["CreatedBy"] or size_mb > max_new_mb:
        raise SmokeFailure(f"the new layer is not ganserve's few MB: {newest}")


def _bytes(size: str) -> float:
    """`docker history` sizes: "0B", "1.23MB", "754MB", "1.2GB", "12.3kB" (powers of 1000)."""
    match = re.fullmatch(r"([\d.]+)\s*([kMGT]?B)", size.strip())
    if not match:
        raise SmokeFailure(f"cannot read a layer size: {size!r}")
    scale = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[match[2]]
    return float(match[1]) * scale


# --- the running stack -----------------------------------------------------------------------


class Stack:
    """The compose project deploy/smoke.sh brought up, seen from the host."""

    def __init__(self) -> None:
        self.project = os.environ["SMOKE_PROJECT"]
        self.base = f"http://127.0.0.1:{os.environ['SMOKE_API_PORT']}"
        self.key = os.environ["GANSERVE_API_KEYS"].split(",")[0]
        self.out = Path(os.environ["SMOKE_OUT"])
        self.secrets = {
            "POSTGRES_PASSWORD": os.environ["POSTGRES_PASSWORD"],
            "REDIS_PASSWORD": os.environ["REDIS_PASSWORD"],
            "GANSERVE_API_KEYS": os.environ["GANSERVE_API_KEYS"],
        }

    # -- plumbing

    def container(self, service: str, number: int = 1) -> str:
        return f"{self.project}-{service}-{number}"

    def inspect(self, container: str) -> dict[str, Any]:
        data = json.loads(docker("inspect", container))
        return dict(data[0])

    def logs(self, container: str) -> str:
        result = subprocess.run(
            ["docker", "logs", container], capture_output=True, text=True, timeout=60
        )
        return result.stdout + result.stderr

    def http(
        self, method: str, path: str, body: dict[str, Any] | None = None, auth: bool = True
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Accept": "*/*"}
        if auth:
            headers["Authorization"] = f"Bearer {self.key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        status, _, content = self.http(method, path, body)
        if status >= 400:
            raise SmokeFailure(f"{method} {path}: {status} {content[:500]!r}")
        return json.loads(content)

    def until(self, what: str, probe: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(every)
        raise SmokeFailure(f"timed out after {timeout:.0f} s waiting for {what} (last: {last})")

    # -- the checks, in order

    def check_migrate(self) -> None:
        state = self.inspect(self.container("migrate"))["State"]
        if state["Status"] != "exited" or state["ExitCode"] != 0:
            raise SmokeFailure(f"migrate: {state}")
        say("ok   migrate ran once and exited 0")

    def check_api_healthy(self) -> None:
        api = self.container("api")

        def healthy() -> str | None:
            health = self.inspect(api)["State"].get("Health", {}).get("Status")
            return health if health == "healthy" else None

        self.until("the api container's healthcheck", healthy, timeout=240)
        status, _, content = self.http("GET", "/readyz", auth=False)
        if status != 200:
            raise SmokeFailure(f"/readyz: {status} {content!r}")
        say(f"ok   api healthy (docker healthcheck), /readyz 200: {content.decode()[:120]}")

    def check_networks_and_secrets(self) -> None:
        """Host networking only; each container holds only the secrets it needs."""
        wanted = {
            "postgres": {"POSTGRES_PASSWORD"},
            "redis": {"REDIS_PASSWORD"},
            "migrate": {"POSTGRES_PASSWORD"},
            "api": {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "GANSERVE_API_KEYS"},
            "worker": {"POSTGRES_PASSWORD", "REDIS_PASSWORD"},
        }
        for service, expected in wanted.items():
            info = self.inspect(self.container(service))
            mode = info["HostConfig"]["NetworkMode"]
            if mode != "host":
                raise SmokeFailure(f"{service}: network mode {mode}, not host")
            seen = " ".join((info["Config"].get("Env") or []) + (info["Config"].get("Cmd") or []))
            held = {name for name, value in self.secrets.items() if value in seen}
            if held != expected:
                raise SmokeFailure(f"{service} holds {sorted(held)}, expected {sorted(expected)}")
        networks = docker(
            "network", "ls", "--filter", f"label=com.docker.compose.project={self.project}", "-q"
        ).split()
        if networks:
            raise SmokeFailure(f"the project created networks: {networks}")
        say(
            "ok   every container on the host network (no network created); secrets: "
            "postgres+migrate the database's, redis the broker's, worker both, api both + keys"
        )

    def submit_job(self, spec: dict[str, Any]) -> str:
        status, _, _ = self.http("POST", "/v1/jobs", spec, auth=False)
        if status != 401:
            raise SmokeFailure(f"POST /v1/jobs without a key: {status}, expected 401")
        job = self.json("POST", "/v1/jobs", spec)
        say(
            f"ok   job {job['id']} submitted ({spec['steps']} steps of {spec['dataset']}; "
            "401 without the API key)"
        )
        return str(job["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.json("GET", f"/v1/jobs/{job_id}"))

    def worker_names(self) -> dict[str, str]:
        """Celery node name -> container, for the two workers (from their "ready" lines)."""
        names: dict[str, str] = {}
        for number in (1, 2):
            container = self.container("worker", number)

            def ready(container: str = container) -> list[str]:
                return re.findall(r'"message": "(\S+@\S+) ready\."', self.logs(container))

            names[self.until(f"{container} to be ready", ready, timeout=300)[-1]] = container
        if len(names) != 2:
            raise SmokeFailure(f"the two workers share a node name: {names}")
        say(f"ok   two workers, two node names: {', '.join(f'{c} {n}' for n, c in names.items())}")
        return names

    def handover(self, job_id: str, stop_after_step: int) -> dict[str, Any]:
        """Stop the worker running the job; the other worker finishes it from its checkpoint."""
        names = self.worker_names()
        running = self.until(
            f"the job to pass step {stop_after_step}",
            lambda: (
                (j := self.job(job_id))["status"] == "running"
                and j["progress"]["step"] >= stop_after_step
                and j
            ),
            timeout=900,
            every=0.25,
        )
        # Stopped at once: a fast machine runs the whole job in seconds.
        worker_1 = running["worker"]  # "<node name>:<pid>"
        first = names[worker_1.rsplit(":", 1)[0]]
        second = next(container for container in names.values() if container != first)
        started = time.monotonic()
        subprocess.run(["docker", "stop", first], check=True, capture_output=True, timeout=180)
        stop_s = time.monotonic() - started
        if running["attempt"] != 1:
            raise SmokeFailure(f"the job started as attempt {running['attempt']}")
        say(f"ok   job running on {first} ({worker_1}), past step {running['progress']['step']}")
        state = self.inspect(first)["State"]
        released = re.findall(r"released at step (\d+)", self.logs(first))
        if not released:
            raise SmokeFailure(f"{first} stopped without releasing the job: {state}")
        step = int(released[-1])
        say(
            f"ok   docker stop {first}: exited {state['ExitCode']} after {stop_s:.1f} s, "
            f"the job released at step {step} with its checkpoint"
        )

        done = self.until(
            "the job to finish on the other worker",
            lambda: (j := self.job(job_id))["status"] in ("succeeded", "failed", "cancelled") and j,
            timeout=1800,
        )
        if done["status"] != "succeeded":
            raise SmokeFailure(f"the job ended {done['status']}: {done.get('error')}")
        if done["attempt"] != 2 or done["worker"] == worker_1:
            raise SmokeFailure(
                f"expected attempt 2 on another worker: attempt {done['attempt']}, "
                f"{done['worker']} (first: {worker_1})"
            )
        resumed = re.findall(r"resuming from step (\d+)", self.logs(second))
        if not resumed or int(resumed[-1]) != step:
            raise SmokeFailure(f"{second} did not resume from step {step}: {resumed}")
        say(
            f"ok   {second} ({done['worker']}) resumed from step {step} as attempt 2 and "
            f"finished: succeeded at step {done['progress']['step']}"
        )
        return dict(done)

    def check_one_version(self, done: dict[str, Any]) -> str:
        name = done["model"]["name"]
        model = self.json("GET", f"/v1/models/{name}")
        versions = model.get("versions", [])
        if len(versions) != 1 or done["model"]["version"] != 1:
            raise SmokeFailure(f"expected one model version: {model}")
        say(f"ok   exactly one model version registered: {name} v{done['model']['version']}")
        return str(name)

    def check_samples_png(self, name: str) -> None:
        status, headers, content = self.http(
            "GET", f"/v1/models/{name}/samples.png?seed=7&n=16&scale=4", auth=False
        )
        kind = headers.get("Content-Type") or headers.get("content-type")
        if status != 200 or not content.startswith(b"\x89PNG\r\n\x1a\n") or kind != "image/png":
            raise SmokeFailure(f"samples.png: {status} {kind} {content[:40]!r}")
        path = self.out / "samples.png"
        path.write_bytes(content)
        say(f"ok   samples.png: 200 image/png, {len(content)} bytes (saved to {path})")


def run_stack_checks() -> None:
    stack = Stack()
    stack.check_migrate()
    stack.check_api_healthy()
    stack.check_networks_and_secrets()
    # Small batches: about 50 steps per second on two idle cores, so the job is stopped
    # mid-way (just past its first checkpoint) and still ends in well under a minute there.
    steps = int(os.environ.get("SMOKE_JOB_STEPS", "1000"))
    spec = {
        "name": "smoke-digits",
        "dataset": "digits",
        "steps": steps,
        "batch_size": 32,
        "checkpoint_every": 50,
        "sample_every": 200,
        "eval_every": 0,
        "eval_samples": 200,
        "device": "cpu",
        "seed": 0,
    }
    job_id = stack.submit_job(spec)
    done = stack.handover(job_id, stop_after_step=60)
    name = stack.check_one_version(done)
    stack.check_samples_png(name)


def main(argv: list[str]) -> int:
    command, *args = argv
    try:
        if command == "requirements":
            print("\n".join(requirements(Path(args[0]))))  # noqa: T201
        elif command == "index":
            say(str(build_index(Path(args[0]), Path(args[1]))))
        elif command == "mirrors":
            print(*apt_mirrors(args[0]))  # noqa: T201
        elif command == "layers":
            layer_report(args[0], args[1])
        elif command == "stack":
            run_stack_checks()
        else:
            raise SystemExit(f"unknown command {command}")
    except SmokeFailure as failure:
        say(f"FAIL {failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
