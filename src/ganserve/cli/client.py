"""`ganserve jobs ...` and `ganserve models ...`: HTTP clients of a running service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ganserve.cli.sse import iter_events

console = Console(stderr=True)
out = Console()

jobs_app = typer.Typer(help="Submit, follow and cancel training jobs.", no_args_is_help=True)
models_app = typer.Typer(help="List registered models and sample them.", no_args_is_help=True)

UrlOption = Annotated[
    str, typer.Option("--url", envvar="GANSERVE_URL", help="Base URL of the service.")
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
        console.print(f"[red]error:[/red] cannot reach {url}: {exc}")
        raise typer.Exit(1) from exc


def follow_job(url: str, api_key: str | None, job_id: str, total: int) -> str:
    """Draw a progress bar from the job's event stream; returns the terminal status."""
    status = "unknown"
    with (
        _client(url, api_key, timeout=None) as client,
        client.stream("GET", f"/v1/jobs/{job_id}/events") as response,
        Progress(
            TextColumn("[bold]{task.fields[status]}[/bold]"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=console,
        ) as bar,
    ):
        _check(response)
        task = bar.add_task("job", total=total, status="queued", info="")
        for event in iter_events(response):
            data = json.loads(event.data)
            if event.event == "progress":
                losses = data.get("losses") or {}
                info = "  ".join(f"{k} {v:.3f}" for k, v in losses.items() if v is not None)
                bar.update(task, completed=data["step"], info=info)
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
    url: UrlOption = "http://127.0.0.1:8000",
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
    job = _request(url, api_key, "POST", "/v1/jobs", json=body).json()
    out.print(job["id"])
    if follow:
        status = follow_job(url, api_key, job["id"], job["progress"]["total_steps"])
        console.print(f"job {job['id']}: {status}")
        if status != "succeeded":
            raise typer.Exit(1)


@jobs_app.command("follow")
def follow(
    job_id: str, url: UrlOption = "http://127.0.0.1:8000", api_key: KeyOption = None
) -> None:
    """Show a job's live progress until it ends."""
    job = _request(url, api_key, "GET", f"/v1/jobs/{job_id}").json()
    status = follow_job(url, api_key, job_id, job["progress"]["total_steps"])
    console.print(f"job {job_id}: {status}")
    if status != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("list")
def list_jobs(
    url: UrlOption = "http://127.0.0.1:8000",
    api_key: KeyOption = None,
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
) -> None:
    """List jobs, newest first."""
    params = {"status": status} if status else {}
    page = _request(url, api_key, "GET", "/v1/jobs", params=params).json()
    table = Table("id", "name", "status", "step", "model")
    for job in page["items"]:
        model = job.get("model") or {}
        table.add_row(
            job["id"], job["name"], job["status"],
            f"{job['progress']['step']}/{job['progress']['total_steps']}",
            f"{model.get('name', '')} v{model['version']}" if model else "",
        )  # fmt: skip
    out.print(table)


@jobs_app.command("show")
def show(job_id: str, url: UrlOption = "http://127.0.0.1:8000", api_key: KeyOption = None) -> None:
    """Print a job as JSON."""
    out.print_json(data=_request(url, api_key, "GET", f"/v1/jobs/{job_id}").json())


@jobs_app.command("cancel")
def cancel(
    job_id: str, url: UrlOption = "http://127.0.0.1:8000", api_key: KeyOption = None
) -> None:
    """Cancel a queued or running job."""
    job = _request(url, api_key, "POST", f"/v1/jobs/{job_id}/cancel").json()
    out.print(f"{job_id}: {job['status']}")


@models_app.command("list")
def list_models(url: UrlOption = "http://127.0.0.1:8000", api_key: KeyOption = None) -> None:
    """List registered models."""
    table = Table("name", "latest", "aliases")
    for model in _request(url, api_key, "GET", "/v1/models").json()["items"]:
        aliases = ", ".join(f"{k}={v}" for k, v in model.get("aliases", {}).items())
        table.add_row(model["name"], str(model["latest_version"]), aliases)
    out.print(table)


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
    scale: Annotated[int, typer.Option(help="Integer upscaling.")] = 1,
    url: UrlOption = "http://127.0.0.1:8000",
    api_key: KeyOption = None,
) -> None:
    """Fetch samples.png of a model into a file."""
    params: dict[str, Any] = {"n": n, "seed": seed, "version": version, "scale": scale}
    for key, value in (("nrow", nrow), ("label", label), ("truncation", truncation)):
        if value is not None:
            params[key] = value
    response = _request(url, api_key, "GET", f"/v1/models/{name}/samples.png", params=params)
    output.write_bytes(response.content)
    version_served = response.headers.get("x-model-version", "?")
    console.print(f"wrote {output} ({len(response.content)} bytes, {name} v{version_served})")
