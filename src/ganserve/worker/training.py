"""One training job, start to finish: claim, train with callbacks, export, register, finish.

Celery never appears here; `tasks.py` decodes the message and calls `run_training_job`.

Fencing. `claim_job` gives this run an attempt number; every later write names it and fails
with StaleAttemptError once another worker has taken the job over (our lease expired). The
run then raises JobLost out of the engine's callbacks, so the engine stops without writing
its abort checkpoint into a folder the new attempt now owns, and returns without touching
the job row or publishing anything more.

Leases. The claim lasts `settings.job_lease_s`; the abort callback (called every step) renews it
every third of that, and each progress write renews it too. A worker that dies stops renewing;
the API's reaper then gives the job to another worker, which resumes from the checkpoint.

Shutdown. `stop_requested` (the worker's SIGTERM flag) is polled with the cancel flag: the
engine checkpoints and returns, and the run releases the job (`release_job`: queued again, the
attempt given back) and returns "released" so the task re-sends it for another worker.

Events. The database is the source of truth and events are a view of it: each event is
published after the write it reports has committed, and a Redis error while publishing is
logged, never fatal to the job. The terminal `status` event is the job's last event.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import redis
import torch

from ganserve.gan.checkpoint import export_generator
from ganserve.gan.classifier import classifier_for
from ganserve.gan.config import TrainConfig
from ganserve.gan.data import load_dataset
from ganserve.gan.errors import GanError, QualityAlarm
from ganserve.gan.inception import InceptionExtractor, load_inception_extractor
from ganserve.gan.sample import encode_png, make_grid
from ganserve.gan.state import TrainState, resolve_device
from ganserve.gan.train import Callbacks, Progress, train
from ganserve.gan.translation.pairs import DomainPair, load_pair
from ganserve.gan.translation.quality import TranslationEvaluator
from ganserve.gan.translation.train import CycleOptions, CycleState, train_cyclegan
from ganserve.store import Session, jobs, metrics, registry
from ganserve.store.errors import RecordNotFoundError, StaleAttemptError
from ganserve.worker import telemetry
from ganserve.worker.errors import JobLost
from ganserve.worker.quality import Evaluation, QualityTracker, build_tracker
from ganserve.worker.resources import WorkerResources
from ganserve.worker.translation_quality import TranslationTracker, export_translation

log = logging.getLogger(__name__)

# Seconds between cancel-flag reads (the abort callback runs every step).
CANCEL_CHECK_INTERVAL_S = 0.5
PREVIEW_PER_ROW = 8
EXPORT_DIR_NAME = "generator"  # under the job's artifact dir
CLASSIFIERS_DIR = "classifiers"  # under the artifacts root, one folder per dataset hash
BEST_ALIAS = "best"  # follows the version with the lowest final Fréchet distance
MAX_ERROR_CHARS = 2000

# What run_training_job returns: the job's final status, "skipped" when it could not be
# claimed, "released" when a shutdown stopped it after a checkpoint and it is queued again
# (the caller sends its task again), or "lost" when this attempt ended without recording an
# outcome (superseded by another claim, or the database failed); a lost job is taken over
# once its lease expires.
Outcome = Literal["succeeded", "failed", "cancelled", "skipped", "released", "lost"]


def _never() -> bool:
    return False


def run_training_job(
    job_id: str,
    resources: WorkerResources,
    worker_name: str,
    *,
    lease_s: float | None = None,
    stop_requested: Callable[[], bool] = _never,
) -> Outcome:
    """Claim job `job_id` for `worker_name` and run it to a final status (see Outcome).

    `lease_s` defaults to `settings.job_lease_s`; `stop_requested` is polled every step and,
    once true, makes the run checkpoint and release the job.
    """
    lease_s = resources.settings.job_lease_s if lease_s is None else lease_s
    with resources.store.session() as session:
        attempt = jobs.claim_job(session, job_id, worker_name, lease_s)
    if attempt is None:
        log.info(
            "job %s: not claimable (unknown, finished, cancelled, out of attempts or running "
            "under a live lease); skipping this delivery",
            job_id,
            extra={"job_id": job_id},
        )
        telemetry.JOBS.labels("skipped").inc()
        return "skipped"
    return _JobRun(job_id, attempt, resources, worker_name, lease_s, stop_requested).run()


def progress_event(progress: Progress) -> dict[str, Any]:
    """The `progress` event's data; NaN and infinities become null (JSON has neither)."""
    return {
        "step": progress.step,
        "total_steps": progress.total_steps,
        "losses": {name: _finite(value) for name, value in progress.losses.items()},
        "d_real": _finite(progress.d_real),
        "d_fake": _finite(progress.d_fake),
        "steps_per_sec": _finite(progress.steps_per_sec),
        "eta_s": _finite(progress.eta_s),
    }


def history_point(progress: Progress) -> dict[str, float]:
    """The series a progress report adds to the job's history (non-finite values are dropped)."""
    point = {f"loss_{name}": value for name, value in progress.losses.items()}
    point.update(d_real=progress.d_real, d_fake=progress.d_fake,
                 steps_per_sec=progress.steps_per_sec)  # fmt: skip
    return point


def internal_error_message(exc: BaseException) -> str:
    """The short error stored on a job that failed for a reason outside the ML core."""
    return _truncate(f"internal error: {type(exc).__name__}: {exc}")


class _JobLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes messages with the job and attempt and adds both as record attributes."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"job {extra['job_id']} attempt {extra['attempt']}: {msg}", kwargs


class _JobRun:
    """The state of one claimed attempt: what its callbacks last wrote, and when."""

    def __init__(
        self,
        job_id: str,
        attempt: int,
        resources: WorkerResources,
        worker_name: str,
        lease_s: float,
        stop_requested: Callable[[], bool] = _never,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.settings = resources.settings
        self.store = resources.store
        self.artifacts = resources.store.artifacts
        self.events = resources.events
        self.lease_s = lease_s
        self.stop_requested = stop_requested
        self.log = _JobLog(log, {"job_id": job_id, "attempt": attempt, "worker": worker_name})
        self.cancel_requested = False
        self.quality: QualityTracker | None = None  # noise GANs
        self.translation: TranslationTracker | None = None  # translation models
        self.last_evaluation: Evaluation | None = None
        self.steps_counted = 0  # for the worker's steps counter (a resumed job starts later)
        never = -math.inf
        self.lease_renewed_at = time.monotonic()
        self.cancel_checked_at = never
        self.progress_written_at = never

    # --- the run -------------------------------------------------------------------------

    def run(self) -> Outcome:
        self.log.info("claimed")
        outcome: Outcome = "lost"
        try:
            outcome = self._run()
        except JobLost as exc:
            self.log.warning("stopped without writing anything more: %s", exc)
        except Exception:
            # The outcome could not be recorded (e.g. the database is down). The job keeps its
            # lease until it expires; then it is taken over and resumes from its checkpoint.
            self.log.exception("could not record the job's outcome; leaving it to its lease")
        finally:
            telemetry.JOBS.labels(outcome).inc()
            last = self.last_evaluation.metrics if self.last_evaluation else {}
            telemetry.forget_job(self.job_id, list(last))
        return outcome

    def _run(self) -> Outcome:
        self._publish("status", {"status": "running", "attempt": self.attempt})
        try:
            with self.store.session() as session:
                job = jobs.get_job(session, self.job_id)
            name = job.name
            config = TrainConfig.from_dict(job.spec)
            run_dir = self.artifacts.job_dir(self.job_id)
            device = self._device(config) or resolve_device(config.device)
            if config.architecture == "cyclegan":
                return self._run_cyclegan(name, config, run_dir, device)
            with self._keep_lease():  # a large dataset or a first classifier takes a while
                dataset = load_dataset(config.dataset, self.settings.data_dir)
                self.quality = build_tracker(
                    config, dataset, run_dir, self.artifacts.root / CLASSIFIERS_DIR, device,
                    self._inception(), progress=self._preparing_reporter(config.dataset),
                )  # fmt: skip
            result = train(
                config,
                dataset,
                run_dir,
                Callbacks(
                    progress=self._on_progress,
                    abort=self._should_abort,
                    checkpoint=self._on_checkpoint,
                    preview=self._on_preview,
                    evaluate=self._on_evaluate if self.quality else None,
                ),
                device=device,
            )
            if result.aborted and not self.cancel_requested:
                return self._release(result.state.step)
            if result.aborted:
                self.log.info("cancelled at step %d", result.state.step)
                return self._finish("cancelled")
            export_dir = run_dir / EXPORT_DIR_NAME
            with self._keep_lease():
                description = export_generator(result.state, export_dir, config.dataset)
            final = self.last_evaluation.metrics if self.last_evaluation else {}
            return self._complete(name, export_dir, description, final)
        except JobLost:
            raise
        except QualityAlarm as alarm:
            if config.on_alarm == "rollback":
                return self._rollback(name, alarm)
            self.log.warning("stopped by a quality alarm: %s", alarm)
            return self._finish("failed", error=_truncate(f"stopped by a quality alarm: {alarm}"))
        except GanError as exc:
            self.log.warning("failed: %s", exc)
            return self._finish("failed", error=_truncate(str(exc)))
        except Exception as exc:
            self.log.exception("failed with an internal error")
            return self._finish("failed", error=internal_error_message(exc))

    def _run_cyclegan(
        self, name: str, config: TrainConfig, run_dir: Path, device: torch.device
    ) -> Outcome:
        """A CycleGAN job (gan.translation): two domains in, a translator registered."""
        with self._keep_lease():  # two datasets, and a first classifier per domain
            pair = load_pair(config.dataset, config.dataset_b, self.settings.data_dir)
            self.translation = self._translation_tracker(config, pair, run_dir, device)
        evaluate = self._on_evaluate_translation if self.translation else None
        result = train_cyclegan(
            config,
            CycleOptions.from_config(config),
            pair,
            run_dir,
            Callbacks(
                progress=self._on_progress,
                abort=self._should_abort,
                checkpoint=self._on_checkpoint,
                preview=self._on_preview,  # rows: A, G(A), F(G(A)), B, F(B), G(F(B))
                # receives the CycleState, not a TrainState
                evaluate=evaluate,  # type: ignore[arg-type]
            ),
            device=device,
        )
        if result.aborted and not self.cancel_requested:
            return self._release(result.state.step)
        if result.aborted:
            self.log.info("cancelled at step %d", result.state.step)
            return self._finish("cancelled")
        export_dir = run_dir / EXPORT_DIR_NAME
        with self._keep_lease():
            description = export_translation(result.state, pair, export_dir)
        final = self.last_evaluation.metrics if self.last_evaluation else {}
        return self._complete(name, export_dir, description, final)

    def _translation_tracker(
        self, config: TrainConfig, pair: DomainPair, run_dir: Path, device: torch.device
    ) -> TranslationTracker | None:
        """Translation quality on schedule (worker.translation_quality), when both domains
        carry the same labels (the built-in pair does); None otherwise."""
        if not pair.class_names:
            self.log.info("no translation quality: the two domains do not share class labels")
            return None
        cache = self.artifacts.root / CLASSIFIERS_DIR
        classifiers = [classifier_for(domain, cache, device) for domain in (pair.a, pair.b)]
        evaluator = TranslationEvaluator(
            pair, *classifiers, samples=min(config.eval_samples, 500), seed=config.seed,
            device=device,
        )  # fmt: skip
        return TranslationTracker(evaluator, pair, run_dir)

    def _device(self, config: TrainConfig) -> torch.device | None:
        """The operator's worker device for specs that say "auto"; None = the spec's own."""
        if config.device == "auto" and self.settings.worker_device != "auto":
            return resolve_device(self.settings.worker_device)
        return None

    def _complete(
        self,
        name: str,
        export_dir: Path,
        description: dict[str, Any],
        final_metrics: dict[str, float],
        warning: str | None = None,
    ) -> Outcome:
        """Register the exported generator in export_dir and finish the job as succeeded."""
        self._heartbeat()
        step = int(description["step"])
        # One transaction: if our attempt went stale meanwhile, nothing is registered and the
        # attempt that took over registers instead (register_version is idempotent per job).
        # Its first write locks the job row, which orders it against a cancel: one committed
        # before wins (nothing registered); one after finds the job finished (409, too late).
        with self._fenced_session() as session:
            if jobs.lock_for_completion(session, self.job_id, self.attempt):
                jobs.finish_job(session, self.job_id, self.attempt, "cancelled")
                model_version = None
            else:
                model_version = self._register(session, name, export_dir, description,
                                               final_metrics, warning)  # fmt: skip
        if model_version is None:
            self.log.info("cancelled at step %d, before a version was registered", step)
            self._publish("status", {"status": "cancelled", "attempt": self.attempt})
            return "cancelled"
        self.log.info("succeeded at step %d: model %s v%d", step, name, model_version)
        self._publish("model", {"name": name, "version": model_version})
        self._publish("status", {"status": "succeeded", "attempt": self.attempt})
        return "succeeded"

    def _register(
        self,
        session: Session,
        name: str,
        export_dir: Path,
        description: dict[str, Any],
        final_metrics: dict[str, float],
        warning: str | None,
    ) -> int:
        """Register the version, move `best`, finish the job as succeeded; the version."""
        version = registry.register_version(
            session,
            name=name,
            job_id=self.job_id,
            step=int(description["step"]),
            artifact_path=self.artifacts.relative(export_dir),
            description=description,
            metrics=final_metrics,
        )
        model_name, model_version = version.name, version.version
        _follow_best(session, model_name, model_version, final_metrics)
        if warning:
            jobs.add_warning(session, self.job_id, warning)
        jobs.finish_job(
            session,
            self.job_id,
            self.attempt,
            "succeeded",
            model_name=model_name,
            model_version=model_version,
        )
        return model_version

    def _rollback(self, name: str, alarm: QualityAlarm) -> Outcome:
        """on_alarm=rollback: stop and register the best evaluated model instead.

        Noise GANs: the generator of the lowest Fréchet distance so far. Translation models:
        that of the lowest `fd` among the evaluations that raised no alarm. None yet: the
        job fails, saying there was nothing to roll back to.
        """
        tracker = self.quality if self.quality is not None else self.translation
        target = tracker.rollback_target() if tracker is not None else None
        if target is None:
            nothing = (
                "no evaluation without alarms yet" if self.translation else "no evaluated model"
            )
            return self._finish("failed", error=_truncate(f"{alarm}; {nothing} to roll back to"))
        message = f"{alarm}; rolled back to step {target.description['step']}" + (
            f" ({target.summary})" if target.summary else ""
        )
        self.log.warning("%s", message)
        return self._complete(
            name, target.folder, target.description, target.metrics, warning=message
        )

    def _release(self, step: int) -> Outcome:
        """Hand the job back after the engine's shutdown checkpoint at `step`."""
        with self._fenced_session() as session:
            job = jobs.release_job(session, self.job_id, self.attempt)
        if job.status == "cancelled":  # a cancel came in that we had not read yet
            self.log.info("cancelled at step %d", step)
            self._publish("status", {"status": "cancelled", "attempt": self.attempt})
            return "cancelled"
        self.log.info(
            "worker shutting down: released at step %d (checkpoint kept) for another worker", step
        )
        self._publish("status", {"status": "queued", "attempt": self.attempt, "step": step})
        return "released"

    def _finish(self, status: Literal["failed", "cancelled"], error: str | None = None) -> Outcome:
        with self._fenced_session() as session:
            jobs.finish_job(session, self.job_id, self.attempt, status, error=error)
        data: dict[str, Any] = {"status": status, "attempt": self.attempt}
        if error is not None:
            data["error"] = error
        self._publish("status", data)
        return status

    # --- engine callbacks ----------------------------------------------------------------

    def _on_progress(self, progress: Progress) -> None:
        now = time.monotonic()
        final = progress.step >= progress.total_steps
        if not final and now - self.progress_written_at < self.settings.progress_interval_s:
            return
        with self._fenced_session() as session:
            jobs.update_progress(
                session,
                self.job_id,
                self.attempt,
                progress.step,
                progress.steps_per_sec,
                progress.eta_s,
                progress.losses,
                lease_s=self.lease_s,
            )
            metrics.append_metrics(session, self.job_id, progress.step, history_point(progress))
        telemetry.STEPS.inc(progress.step - self.steps_counted)
        self.steps_counted = progress.step
        if math.isfinite(progress.steps_per_sec):
            telemetry.JOB_STEPS_PER_SECOND.labels(self.job_id).set(progress.steps_per_sec)
        self.progress_written_at = self.lease_renewed_at = now
        self._publish("progress", progress_event(progress))

    def _preparing_reporter(self, dataset: str) -> Callable[[int, int], None]:
        """`preparing` events while the dataset's evaluation classifier trains (once)."""
        what = f"training the evaluation classifier for {dataset}, one-time"
        last = -math.inf

        def report(step: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if step < total and now - last < self.settings.progress_interval_s:
                return
            last = now
            self._publish("preparing", {
                "step": step, "total": total, "what": what,
                "message": f"{what}, step {step}/{total}",
            })  # fmt: skip

        return report

    def _should_abort(self) -> bool:
        now = time.monotonic()
        # Renew well before expiry even when progress writes are rare (slow steps).
        if now - self.lease_renewed_at >= self.lease_s / 3:
            self._heartbeat()
        if not self.cancel_requested and now - self.cancel_checked_at >= CANCEL_CHECK_INTERVAL_S:
            self.cancel_checked_at = now
            with self.store.session() as session:
                self.cancel_requested = jobs.is_cancel_requested(session, self.job_id)
        return self.cancel_requested or self.stop_requested()

    def _on_evaluate(self, state: TrainState) -> None:
        assert self.quality is not None
        with self._keep_lease():
            evaluation = self.quality.evaluate(state)
        self._record_evaluation(evaluation, state.config)

    def _on_evaluate_translation(self, state: CycleState) -> None:
        assert self.translation is not None
        with self._keep_lease():
            evaluation = self.translation.evaluate(state)
        self._record_evaluation(evaluation, state.config)

    def _record_evaluation(self, evaluation: Evaluation, config: TrainConfig) -> None:
        """Status, history, events and telemetry of one evaluation; QualityAlarm if it says so."""
        self.last_evaluation = evaluation
        telemetry.EVALUATION_SECONDS.observe(evaluation.metrics.get("eval_seconds", 0.0))
        for name, value in evaluation.metrics.items():
            telemetry.JOB_METRIC.labels(self.job_id, name).set(value)
        with self._fenced_session() as session:
            jobs.record_metrics(session, self.job_id, self.attempt, evaluation.metrics)
            metrics.append_metrics(
                session, self.job_id, evaluation.step, evaluation.metrics,
                extra=evaluation.provenance,
            )  # fmt: skip
            for warning in evaluation.warnings:
                jobs.add_warning(session, self.job_id, warning.message)
        self.log.info("evaluated at step %d: %s", evaluation.step, evaluation.metrics,
                      extra={"step": evaluation.step})  # fmt: skip
        values = {name: _finite(value) for name, value in evaluation.metrics.items()}
        self._publish("evaluation", {
            "step": evaluation.step, "metrics": values,
            "provenance": evaluation.provenance, "best": evaluation.is_best,
        })  # fmt: skip
        for warning in evaluation.warnings:
            self._publish("warning", {"kind": warning.kind, "step": warning.step,
                                      "message": warning.message})  # fmt: skip
        if evaluation.warnings and config.on_alarm != "warn":
            first = evaluation.warnings[0]
            raise QualityAlarm(first.kind, first.step, first.message)

    def _on_checkpoint(self, path: Path, step: int) -> None:
        self._heartbeat()
        self._publish("checkpoint", {"step": step})

    def _on_preview(self, step: int, images: torch.Tensor) -> None:
        png = encode_png(make_grid(images, nrow=PREVIEW_PER_ROW))
        self.artifacts.write_bytes_atomic(self.artifacts.preview_path(self.job_id), png)
        self._publish("preview", {"step": step})

    # --- writes --------------------------------------------------------------------------

    @contextmanager
    def _fenced_session(self) -> Iterator[Session]:
        """A committed session whose fenced writes raise JobLost once the attempt is stale."""
        try:
            with self.store.session() as session:
                yield session
        except StaleAttemptError as exc:
            raise JobLost(str(exc)) from exc

    @contextmanager
    def _keep_lease(self) -> Iterator[None]:
        """Heartbeat from a thread while slow work that calls no engine callback runs."""
        done = threading.Event()
        lost: list[JobLost] = []

        def beat() -> None:
            while not done.wait(self.lease_s / 3):
                try:
                    self._heartbeat()
                except JobLost as exc:
                    lost.append(exc)
                    return
                except Exception as exc:  # a database hiccup: the next beat retries
                    self.log.warning("heartbeat failed: %s", exc)

        thread = threading.Thread(target=beat, name=f"lease-{self.job_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
        if lost:
            raise lost[0]
        self._heartbeat()

    def _inception(self) -> InceptionExtractor | None:
        path = self.settings.inception_weights
        return None if path is None else _load_inception(str(path))

    def _heartbeat(self) -> None:
        with self._fenced_session() as session:
            jobs.heartbeat(session, self.job_id, self.attempt, self.lease_s)
        self.lease_renewed_at = time.monotonic()

    def _publish(self, type_: str, data: dict[str, Any]) -> None:
        try:
            self.events.publish(self.job_id, type_, data)
        except redis.RedisError as exc:
            self.log.warning("could not publish a %s event: %s", type_, exc)


@functools.cache
def _load_inception(path: str) -> InceptionExtractor:
    """Once per worker process; ConfigError (the job fails, naming the file) if unusable."""
    return load_inception_extractor(path, setting="GANSERVE_INCEPTION_WEIGHTS")


def _follow_best(session: Session, name: str, version: int, final: dict[str, float]) -> None:
    """Point the `best` alias at `version` when its final Fréchet distance beats the holder's."""
    fd = final.get("fd")
    if fd is None or not math.isfinite(fd):
        return
    try:
        holder = registry.resolve(session, name, BEST_ALIAS)
    except RecordNotFoundError:
        holder = None
    held = (holder.metrics or {}).get("fd") if holder is not None else None
    if holder is None or held is None or fd < held:
        registry.set_alias(session, name, BEST_ALIAS, version)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
