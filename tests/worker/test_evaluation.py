"""Quality evaluation inside a job: metrics in status, history, events; alarms; `best`."""

from __future__ import annotations

import redis
from sqlalchemy import select

from ganserve.gan.checkpoint import load_generator
from ganserve.store import MetricPoint, jobs, metrics, registry
from ganserve.store.events import read_events_sync
from ganserve.worker.resources import WorkerResources
from ganserve.worker.training import run_training_job
from tests.worker.support import MakeJob

WORKER = "test-worker:1"
QUALITY = {"eval_every": 10, "eval_samples": 200, "alarm_after": 0.0}  # alarms from the start


def test_evaluations_reach_status_history_events_and_the_model(
    make_job: MakeJob, resources: WorkerResources, redis_client: redis.Redis
) -> None:
    job_id = make_job(**QUALITY)
    assert run_training_job(job_id, resources, WORKER) == "succeeded"
    with resources.store.session() as session:
        job = jobs.get_job(session, job_id)
        series = metrics.history(session, job_id)
        version = registry.get_version(session, "digits-gan", 1)
        best = registry.resolve(session, "digits-gan", "best")
        extras = session.scalars(
            select(MetricPoint.extra).where(MetricPoint.job_id == job_id, MetricPoint.name == "fd")
        ).all()
    assert [step for step, _ in series["fd"]] == [10, 20, 30]
    assert [step for step, _ in series["coverage"]] == [10, 20, 30]
    assert {"kid", "kl_uniform", "eval_seconds"} <= set(series)
    assert job.latest_metrics["fd"] == series["fd"][-1][1]
    assert version.metrics["fd"] == series["fd"][-1][1]  # the final values on the version
    assert best.version == 1
    # every stored value records its extractor, sample count and seed
    assert len(extras) == 3
    assert all(e["num_samples"] == 200 and e["seed"] == 0 and e["extractor"] for e in extras)

    events = read_events_sync(redis_client, job_id)
    evaluations = [e.data for e in events if e.type == "evaluation"]
    assert [e["step"] for e in evaluations] == [10, 20, 30]
    provenance = evaluations[0]["provenance"]
    assert provenance["num_samples"] == 200 and provenance["seed"] == 0
    assert len(provenance["extractor"]) == 16 and provenance["classifier_accuracy"] > 0.9


def test_the_best_alias_follows_the_lowest_frechet_distance(
    make_job: MakeJob, resources: WorkerResources
) -> None:
    first = make_job(steps=30, eval_samples=200)
    second = make_job(steps=2, eval_samples=200)  # barely trained: a worse distance
    assert run_training_job(first, resources, WORKER) == "succeeded"
    assert run_training_job(second, resources, WORKER) == "succeeded"
    with resources.store.session() as session:
        v1 = registry.get_version(session, "digits-gan", 1)
        v2 = registry.get_version(session, "digits-gan", 2)
        best = registry.resolve(session, "digits-gan", "best")
        latest = registry.resolve(session, "digits-gan", "latest")
    assert v2.metrics["fd"] > v1.metrics["fd"]
    assert (best.version, latest.version) == (1, 2)


def test_an_alarm_can_stop_the_job(
    make_job: MakeJob, resources: WorkerResources, redis_client: redis.Redis
) -> None:
    # every class must get its fair share: a 10-step GAN does not, so the first evaluation alarms
    job_id = make_job(**QUALITY, alarm_coverage=1.0, on_alarm="stop")
    assert run_training_job(job_id, resources, WORKER) == "failed"
    with resources.store.session() as session:
        job = jobs.get_job(session, job_id)
        assert registry.list_models(session) == []
    assert job.error is not None
    assert job.error.startswith("stopped by a quality alarm: possible mode collapse at step 10")
    assert any("mode collapse" in warning for warning in job.warnings)
    kinds = [event.type for event in read_events_sync(redis_client, job_id)]
    assert "warning" in kinds and kinds[-1] == "status"


def test_collapse_alarms_start_at_alarm_after(
    make_job: MakeJob, resources: WorkerResources
) -> None:
    # 30 steps, evaluated at 10, 20, 30; alarm_after 0.5: step 10 is still forming
    job_id = make_job(**{**QUALITY, "alarm_after": 0.5}, alarm_coverage=1.0, on_alarm="stop")
    assert run_training_job(job_id, resources, WORKER) == "failed"
    with resources.store.session() as session:
        job = jobs.get_job(session, job_id)
        series = metrics.history(session, job_id)
    assert [step for step, _ in series["coverage"]][:2] == [10, 20]  # step 10 was evaluated
    assert job.error is not None and "possible mode collapse at step 20" in job.error


def test_an_alarm_can_roll_back_to_the_best_evaluation(
    make_job: MakeJob, resources: WorkerResources
) -> None:
    job_id = make_job(**QUALITY, alarm_coverage=1.0, on_alarm="rollback")
    assert run_training_job(job_id, resources, WORKER) == "succeeded"
    store = resources.store
    with store.session() as session:
        job = jobs.get_job(session, job_id)
        version = registry.get_version(session, "digits-gan", 1)
    assert version.step == 10  # the evaluated model, not a later one
    exported = load_generator(store.artifacts.absolute(version.artifact_path))
    assert exported.description["step"] == 10
    assert any("rolled back to step 10" in warning for warning in job.warnings)


# ----------------------------------------------------------------------------- inside classes


def test_per_class_metrics_reach_history_and_the_model_version(
    make_job: MakeJob, resources: WorkerResources
) -> None:
    job_id = make_job("digits-cgan", conditional=True, **QUALITY)
    assert run_training_job(job_id, resources, WORKER) == "succeeded"
    with resources.store.session() as session:
        series = metrics.history(session, job_id)
        version = registry.get_version(session, "digits-cgan", 1)
    for k in range(10):  # "<metric>.<class index>", one point per evaluation
        for prefix in ("class_fd", "class_div", "class_recall", "class_acc"):
            assert [step for step, _ in series[f"{prefix}.{k}"]] == [10, 20, 30]
            assert version.metrics[f"{prefix}.{k}"] == series[f"{prefix}.{k}"][-1][1]
    assert version.metrics["class_div_min"] == min(version.metrics[f"class_div.{k}"]
                                                   for k in range(10))  # fmt: skip
    assert "unrecognised" in version.metrics and "cond_acc" in version.metrics


def test_a_collapsed_class_stops_the_job_and_is_named(
    make_job: MakeJob, resources: WorkerResources, redis_client: redis.Redis
) -> None:
    # A 10-step cGAN draws near-copies of one blob for every seed of a class: collapse inside
    # every class. The coverage alarm is off (0), so only the class alarm can stop it.
    job_id = make_job("digits-cgan", conditional=True, **QUALITY, alarm_coverage=0.0,
                      on_alarm="stop")  # fmt: skip
    assert run_training_job(job_id, resources, WORKER) == "failed"
    with resources.store.session() as session:
        job = jobs.get_job(session, job_id)
        assert registry.list_models(session) == []
    assert job.error is not None
    assert job.error.startswith("stopped by a quality alarm: collapse inside class")
    assert "at step 10: class '0': " in job.error
    warnings = [e.data for e in read_events_sync(redis_client, job_id) if e.type == "warning"]
    assert warnings and warnings[0]["kind"] == "class_collapse"
    assert "class '9'" in warnings[0]["message"]


def test_a_collapsed_class_can_roll_back_with_its_per_class_metrics(
    make_job: MakeJob, resources: WorkerResources
) -> None:
    job_id = make_job("digits-cgan", conditional=True, **QUALITY, alarm_coverage=0.0,
                      on_alarm="rollback")  # fmt: skip
    assert run_training_job(job_id, resources, WORKER) == "succeeded"
    with resources.store.session() as session:
        job = jobs.get_job(session, job_id)
        version = registry.get_version(session, "digits-cgan", 1)
        series = metrics.history(session, job_id)
    assert version.step == 10
    assert any("collapse inside class" in w and "rolled back to step 10" in w
               for w in job.warnings)  # fmt: skip
    assert version.metrics["class_div.3"] == series["class_div.3"][-1][1]
