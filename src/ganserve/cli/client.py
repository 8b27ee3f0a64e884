"""`ganserve jobs ...` and `ganserve models ...`: HTTP clients of a running service."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from ganserve.cli.images import READABLE_PX, picture_size, readable_scale
from ganserve.cli.sse import iter_events

# soft_wrap: long lines are left to the terminal (or the file they are piped into), never
# broken mid-phrase at rich's 80-column default for non-terminals.
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

DEFAULT_URL = "http://127.0.0.1:8000"
WAIT_POLL_S = 1.0  # `jobs wait`: seconds between looks at the job

jobs_app = typer.Typer(help="Submit, follow and cancel training jobs.", no_args_is_help=True)
models_app = typer.Typer(help="List registered models and sample them.", no_args_is_help=True)

UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="GANSERVE_URL",
        help="Base URL of the service (`ganserve up` prints it when not the default).",
    ),
]
KeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="GANSERVE_API_KEY", help="Bearer API key.")
]


def _client(url: str, api_key: str | None, timeout: float | None = 30.0) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=timeout)


def _check(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    try:
        body = response.json()
        message = body.get("detail") or body.get("title") or response.text
    except ValueError:
        message = response.text
    console.print(f"[red]error {response.status_code}:[/red] {message}")
    raise typer.Exit(1)


def _request(url: str, api_key: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
    try:
        with _client(url, api_key) as client:
            return _check(client.request(method, path, **kw))
    except httpx.TransportError as exc:
        unreachable(url, exc)


SUBMIT_TRIES = 3  # a submit whose connection dropped is sent again, with the same key


def submit_once(url: str, api_key: str | None, body: dict[str, Any]) -> httpx.Response:
    """POST the spec with an Idempotency-Key, retrying a dropped connection with the same
    key: the server answers a retry with the job it already made, never a second one."""
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    for attempt in range(1, SUBMIT_TRIES + 1):
        try:
            with _client(url, api_key) as client:
                return _check(client.post("/v1/jobs", json=body, headers=headers))
        except httpx.TransportError as exc:
            if attempt == SUBMIT_TRIES:
                unreachable(url, exc)
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")  # the loop returns or exits


def unreachable(url: str, exc: Exception) -> NoReturn:
    """Exit saying where we looked and how to point the command elsewhere."""
    console.print(
        f"[red]error:[/red] cannot reach {url}: {exc}\n"
        f"Is the service running? `ganserve up` starts one. For a service at another address "
        f"set GANSERVE_URL (e.g. export GANSERVE_URL=http://127.0.0.1:8100) or pass --url."
    )
    raise typer.Exit(1) from exc


def follow_job(url: str, api_key: str | None, job_id: str, total: int) -> str:
    """Draw a progress bar from the job's event stream; returns the terminal status."""
    try:
        return _follow(url, api_key, job_id, total)
    except httpx.TransportError as exc:
        unreachable(url, exc)


def _follow(url: str, api_key: str | None, job_id: str, total: int) -> str:
    status = "unknown"
    with (
        _client(url, api_key, timeout=None) as client,
        client.stream("GET", f"/v1/jobs/{job_id}/events") as response,
        Progress(
            TextColumn("[bold]{task.fields[status]}[/bold]"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=console,
        ) as bar,
    ):
        _check(response)
        task = bar.add_task("job", total=total, status="queued", info="", unit="steps")
        preparing: TaskID | None = None  # the one-time work before the first step, if any
        for event in iter_events(response):
            data = json.loads(event.data)
            if event.event == "preparing":
                if preparing is None:
                    preparing = bar.add_task(
                        "preparing", total=data.get("total") or 1, status="preparing",
                        info=data.get("what", ""), unit="steps",
                    )  # fmt: skip
                    bar.update(task, visible=False)
                bar.update(preparing, completed=data.get("step", 0), total=data.get("total") or 1)
            elif event.event == "progress":
                if preparing is not None:
                    bar.remove_task(preparing)
                    preparing = None
                    bar.update(task, visible=True)
                losses = data.get("losses") or {}
                info = "  ".join(f"{k} {v:.3f}" for k, v in losses.items() if v is not None)
                bar.update(task, completed=data["step"], info=info, status="training")
            elif event.event == "status":
                status = data["status"]
                bar.update(task, status=status)
                if data.get("error"):
                    console.print(f"[red]{data['error']}[/red]")
            elif event.event == "model":
                console.print(f"registered model {data['name']} version {data['version']}")
            elif event.event == "warning":
                console.print(f"[yellow]warning:[/yellow] {data.get('message', data)}")
    return status


@jobs_app.command("submit")
def submit(
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    name: Annotated[str | None, typer.Option(help="Model name to register.")] = None,
    dataset: Annotated[str, typer.Option(help="Dataset to train on.")] = "digits",
    steps: Annotated[int, typer.Option(help="Generator updates.")] = 2000,
    architecture: Annotated[str, typer.Option(help="mlp or dcgan.")] = "mlp",
    loss: Annotated[str, typer.Option(help="bce, wgan-gp or hinge.")] = "bce",
    conditional: Annotated[bool, typer.Option(help="Class-conditional GAN.")] = False,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 128,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    spec: Annotated[
        Path | None, typer.Option(help="A JSON file with the full training spec (overrides).")
    ] = None,
    follow: Annotated[bool, typer.Option(help="Show live progress until the job ends.")] = False,
) -> None:
    """Submit a training job."""
    body: dict[str, Any] = {
        "dataset": dataset, "steps": steps, "architecture": architecture, "loss": loss,
        "conditional": conditional, "batch_size": batch_size, "seed": seed,
    }  # fmt: skip
    if name:
        body["name"] = name
    if spec:
        body.update(json.loads(spec.read_text()))
    job = submit_once(url, api_key, body).json()
    out.print(job["id"])
    if follow:
        status = follow_job(url, api_key, job["id"], job["progress"]["total_steps"])
        console.print(f"job {job['id']}: {status}")
        if status != "succeeded":
            raise typer.Exit(1)


@jobs_app.command("follow")
def follow(job_id: str, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Show a job's live progress until it ends."""
    job = _request(url, api_key, "GET", f"/v1/jobs/{job_id}").json()
    status = follow_job(url, api_key, job_id, job["progress"]["total_steps"])
    console.print(f"job {job_id}: {status}")
    if status != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("wait")
def wait(
    job_id: str,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    timeout: Annotated[
        float | None, typer.Option(help="Give up after this many seconds (default: never).")
    ] = None,
) -> None:
    """Wait quietly until a job ends; exit 0 when it succeeded (for scripts)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = _request(url, api_key, "GET", f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        if deadline is not None and time.monotonic() >= deadline:
            console.print(f"job {job_id}: still {job['status']} after {timeout:g} s")
            raise typer.Exit(2)
        time.sleep(WAIT_POLL_S)
    model = job.get("model")
    made = f" (model {model['name']} version {model['version']})" if model else ""
    error = f": {job['error']}" if job.get("error") else ""
    console.print(f"job {job_id}: {job['status']}{made}{error}")
    if job["status"] != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("list")
def list_jobs(
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
) -> None:
    """List jobs, newest first."""
    params = {"status": status} if status else {}
    page = _request(url, api_key, "GET", "/v1/jobs", params=params).json()
    rows = [
        [
            job["id"], job["name"], job["status"],
            f"{job['progress']['step']}/{job['progress']['total_steps']}",
            f"{job['model']['name']} v{job['model']['version']}" if job.get("model") else "",
        ]
        for job in page["items"]
    ]  # fmt: skip
    print_table(["id", "name", "status", "step", "model"], rows)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A table in a terminal; aligned plain columns when piped. Cells are never cut."""
    if not out.is_terminal:
        widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
        for row in (headers, *rows):
            line = "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
            out.print(line.rstrip(), markup=False, highlight=False)
        return
    table = Table(*headers)
    for column in table.columns:
        column.no_wrap = True  # ids and names stay whole, to be copied
    for row in rows:
        table.add_row(*row)
    out.print(table)


@jobs_app.command("show")
def show(job_id: str, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Print a job as JSON."""
    out.print_json(data=_request(url, api_key, "GET", f"/v1/jobs/{job_id}").json())


@jobs_app.command("cancel")
def cancel(job_id: str, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Cancel a queued or running job."""
    job = _request(url, api_key, "POST", f"/v1/jobs/{job_id}/cancel").json()
    out.print(f"{job_id}: {job['status']}")


@models_app.command("list")
def list_models(url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """List registered models."""
    rows = []
    for model in _request(url, api_key, "GET", "/v1/models").json()["items"]:
        aliases = ", ".join(f"{k}={v}" for k, v in model.get("aliases", {}).items())
        rows.append([model["name"], str(model["latest_version"]), aliases])
    print_table(["name", "latest", "aliases"], rows)


@models_app.command("sample")
def sample(
    name: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")],
    n: Annotated[int, typer.Option("-n", help="Images (more than 1 makes a grid).")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the first image.")] = 0,
    nrow: Annotated[int | None, typer.Option(help="Images per grid row.")] = None,
    label: Annotated[int | None, typer.Option(help="Class (conditional models).")] = None,
    truncation: Annotated[float | None, typer.Option(help="Truncation threshold.")] = None,
    version: Annotated[str, typer.Option(help="Version number or alias.")] = "latest",
    scale: Annotated[
        int | None,
        typer.Option(
            help=f"Integer upscaling (default: enough for {READABLE_PX} px on the long side)."
        ),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Fetch samples.png of a model into a file."""
    auto_scale = scale is None
    if scale is None:
        model = _request(url, api_key, "GET", f"/v1/models/{name}").json()
        scale = _readable_scale(model, version, n, nrow)
    params: dict[str, Any] = {"n": n, "seed": seed, "version": version, "scale": scale}
    for key, value in (("nrow", nrow), ("label", label), ("truncation", truncation)):
        if value is not None:
            params[key] = value
    path = f"/v1/models/{name}/samples.png"
    try:
        with _client(url, api_key) as client:
            response = client.get(path, params=params)
            problem = response.json() if response.status_code == 413 else {}
            limit = problem.get("limit") if problem.get("field") == "scale" else None
            if auto_scale and isinstance(limit, int) and 1 <= limit < params["scale"]:
                params["scale"] = limit  # the service's own GANSERVE_MAX_SCALE
                response = client.get(path, params=params)
    except httpx.TransportError as exc:
        unreachable(url, exc)
    _check(response)
    output.write_bytes(response.content)
    version_served = response.headers.get("x-model-version", "?")
    console.print(f"wrote {output} ({len(response.content)} bytes, {name} v{version_served})")


def _readable_scale(model: dict[str, Any], version: str, n: int, nrow: int | None) -> int:
    """The default --scale for `version` (a number or an alias) of `model` (GET /v1/models/x)."""
    number = int(version) if version.isdigit() else model.get("aliases", {}).get(version)
    found = [v for v in model.get("versions", []) if v.get("version") == number]
    shape = found[0].get("image_shape") if found else None
    if not shape:
        return 1  # unknown version: the service names the problem
    _, height, width = shape
    return readable_scale(picture_size(height, width, n, nrow))
