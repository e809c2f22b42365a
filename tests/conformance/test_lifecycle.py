"""The one lifecycle suite every adapter passes, bound to its emulator (see bindings.py).

Parametrised from the provider registry: a provider without an emulator binding fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from finetune_hub import api, registry
from finetune_hub.errors import AuthError, ConfigError, InvalidRequest, NotFound, ProviderError, QuotaError
from finetune_hub.job import FineTuneJob
from finetune_hub.records import Capability, JobResult, JobStatus
from finetune_hub.store import JobStore
from tests.conformance.binding import Binding
from tests.conformance.bindings import binding_for
from tests.conftest import no_sleep, write_chat_jsonl

PROVIDERS = sorted(registry.BUILTIN)


@pytest.fixture(params=PROVIDERS)
def bound(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Binding]:
    factory = binding_for(request.param)
    if factory is None:
        pytest.fail(f"provider '{request.param}' has no emulator binding in tests/conformance/bindings.py")
    binding = factory()
    binding.start(tmp_path, monkeypatch)
    yield binding
    binding.stop()


def make_spec(bound: Binding, tmp_path: Path):  # type: ignore[no-untyped-def]
    train = write_chat_jsonl(tmp_path / "data" / "train.jsonl", 12)
    valid = write_chat_jsonl(tmp_path / "data" / "valid.jsonl", 10, start=100)
    return bound.spec(train, valid)


def submit(bound: Binding, tmp_path: Path, store: JobStore):  # type: ignore[no-untyped-def]
    return api.submit(make_spec(bound, tmp_path), bound.provider, store=store, client=bound.client())


def test_class_data(bound: Binding) -> None:
    cls = registry.load(bound.provider)
    assert cls.provider == bound.provider
    for capability in Capability:
        assert capability in cls.capabilities, f"{capability} not declared"
        reason = cls.capabilities[capability]
        assert reason is None or (isinstance(reason, str) and reason.strip()), f"{capability}: give a reason"
    assert all(isinstance(v, JobStatus) for v in cls.status_map.values())
    assert cls.map_status("a-status-no-platform-has") is JobStatus.UNKNOWN
    assert cls.map_status(None) is JobStatus.UNKNOWN


def test_check_accepts_a_valid_spec(bound: Binding, tmp_path: Path) -> None:
    job = api.make_job(bound.provider, make_spec(bound, tmp_path), client=bound.client())
    assert [p for p in job.check() if p.severity == "error"] == []


def test_prepare_uploads_each_file_once(bound: Binding, tmp_path: Path, store: JobStore) -> None:
    spec = make_spec(bound, tmp_path)
    first = api.make_job(bound.provider, spec, store=store, client=bound.client()).prepare()
    uploads = bound.uploads()
    assert uploads >= 1
    again = api.make_job(bound.provider, spec, store=store, client=bound.client()).prepare()
    assert again.files == first.files
    assert bound.uploads() == uploads


def test_lifecycle_to_success(bound: Binding, tmp_path: Path, store: JobStore) -> None:
    job = submit(bound, tmp_path, store)
    assert job.record is not None and job.record.remote_id
    assert job.record.status in (JobStatus.QUEUED, JobStatus.RUNNING)
    assert bound.remote_jobs() == 1

    bound.advance(job.remote_id, "running")
    assert job.sync().status is JobStatus.RUNNING
    with pytest.raises(InvalidRequest, match="has a result once it succeeds"):  # one answer on every platform
        job.result()
    bound.advance(job.remote_id, "succeeded")
    state = job.wait(sleep=no_sleep, timeout=60)
    assert state.status is JobStatus.SUCCEEDED

    record = store.get(job.record.id)
    assert record.status is JobStatus.SUCCEEDED and record.result is not None
    result = job.result()
    assert isinstance(result, JobResult)
    assert result.model or result.artifact
    statuses = [s for s, _, _ in store.history(record.id)]
    assert statuses[0] is JobStatus.CREATED and statuses[-1] is JobStatus.SUCCEEDED
    assert JobStatus.RUNNING in statuses
    if job.supports(Capability.EVENTS):
        assert store.events(record.id), "events are persisted"
        times = [e.time for e in job.events()]
        assert times == sorted(times)
        assert job.events(since=times[-1]) == []
    if job.supports(Capability.CHECKPOINTS):
        assert all(c.id for c in job.checkpoints())
    reopened = api.open_job(record.id, store=store, client=bound.client())
    assert reopened.refresh().status is JobStatus.SUCCEEDED


def test_lifecycle_to_failure(bound: Binding, tmp_path: Path, store: JobStore) -> None:
    job = submit(bound, tmp_path, store)
    bound.advance(job.remote_id, "failed")
    state = job.wait(sleep=no_sleep, timeout=60)
    assert state.status is JobStatus.FAILED
    assert state.error
    assert store.get(job.local_id or "").error


def test_cancel(bound: Binding, tmp_path: Path, store: JobStore) -> None:
    job = submit(bound, tmp_path, store)
    if not job.supports(Capability.CANCEL):
        with pytest.raises(ProviderError):
            job.cancel()
        return
    bound.advance(job.remote_id, "running")
    state = job.cancel()
    assert state.status in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    assert job.sync().status in (JobStatus.CANCELLING, JobStatus.CANCELLED)


def test_error_translation(bound: Binding, tmp_path: Path, store: JobStore) -> None:
    job = submit(bound, tmp_path, store)
    bound.inject("401")
    with pytest.raises(AuthError) as auth:
        job.refresh()
    assert not auth.value.retryable and auth.value.exit_code == 3
    bound.inject("429")
    with pytest.raises(QuotaError) as quota:
        job.refresh()
    assert quota.value.retryable
    for fault in ("500", "503", "drop"):
        bound.inject(fault)
        with pytest.raises(ProviderError) as server:
            job.refresh()
        assert server.value.retryable, fault
    bound.inject("503", count=2)
    assert job.retrying(job.refresh, sleep=no_sleep).status in (JobStatus.QUEUED, JobStatus.RUNNING)


def test_unknown_remote_job_is_not_found(bound: Binding, tmp_path: Path, store: JobStore) -> None:
    job = submit(bound, tmp_path, store)
    assert job.record is not None
    store.update(job.record.id, remote_id="does-not-exist-123")
    ghost = api.open_job(job.record.id, store=store, client=bound.client())
    with pytest.raises(NotFound):
        ghost.refresh()


def test_idempotent_retry_after_lost_reply(bound: Binding, tmp_path: Path, store: JobStore) -> None:
    spec = make_spec(bound, tmp_path)
    api.make_job(bound.provider, spec, store=store, client=bound.client()).prepare()
    bound.inject("lost", on=bound.create_request)
    job = api.submit(spec, bound.provider, store=store, client=bound.client())
    assert bound.remote_jobs() == 1
    # A second process retrying the same key finds the same job.
    assert job.record is not None
    again = api.make_job(bound.provider, spec, store=store, client=bound.client())
    assert again.submit(again.prepare(), job.record.idempotency_key) == job.remote_id
    assert bound.remote_jobs() == 1


def test_a_submit_that_works_on_a_second_try_keeps_no_error(bound: Binding, tmp_path: Path, store: JobStore) -> None:
    spec = make_spec(bound, tmp_path)
    api.make_job(bound.provider, spec, store=store, client=bound.client()).prepare()
    bound.inject("401", on=bound.create_request)
    with pytest.raises(AuthError):
        api.submit(spec, bound.provider, store=store, client=bound.client())
    (failed,) = store.list_jobs()
    assert failed.remote_id is None and failed.error
    with pytest.raises(ConfigError, match="no answer from the platform"):  # following it would never end
        next(api.open_job(failed.id, store=store, client=bound.client()).logs(follow=True))
    job = api.submit(spec, bound.provider, store=store, client=bound.client())
    assert job.record is not None and job.record.id == failed.id and job.record.error is None
    assert bound.remote_jobs() == 1


def submit_left_unanswered(bound: Binding, tmp_path: Path, store: JobStore):  # type: ignore[no-untyped-def]
    """A submit the platform refused (401): recorded, with no remote id. (spec, record)"""
    spec = make_spec(bound, tmp_path)
    bound.inject("401", on=bound.create_request)
    with pytest.raises(AuthError):
        api.submit(spec, bound.provider, store=store, client=bound.client())
    (record,) = store.list_jobs()
    return spec, record


def test_a_submit_left_without_an_answer_and_cleared_is_found_again_not_duplicated(
    bound: Binding, tmp_path: Path, store: JobStore
) -> None:
    spec, record = submit_left_unanswered(bound, tmp_path, store)
    # the platform did create it (a crash before the reply was recorded), but the store cannot know that ...
    created = api.make_job(bound.provider, spec, store=store, client=bound.client())
    remote = created.submit(created.prepare(), record.idempotency_key)
    store.update(record.id, status=JobStatus.CANCELLED)  # ... and `fth cancel` cleared the record locally
    job = api.submit(spec, bound.provider, store=store, client=bound.client())
    assert (job.record.id if job.record else None, job.remote_id) == (record.id, remote)
    assert bound.remote_jobs() == 1


def test_a_cancel_while_the_submit_waits_for_the_platform_is_honoured(
    bound: Binding, tmp_path: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(bound, tmp_path)
    api.make_job(bound.provider, spec, store=store, client=bound.client()).prepare()
    bound.inject("429", on=bound.create_request)  # the submit waits before it asks again ...

    def cancel_meanwhile(_: float) -> None:  # ... and the user runs `fth cancel` in another terminal
        (record,) = store.list_jobs()
        api.control(api.open_job(record.id, store=store, client=bound.client()), "cancel")
        monkeypatch.setattr(FineTuneJob, "retry_sleep", staticmethod(no_sleep))

    monkeypatch.setattr(FineTuneJob, "retry_sleep", staticmethod(cancel_meanwhile))
    job = api.submit(spec, bound.provider, store=store, client=bound.client())
    assert bound.remote_jobs() == 1
    stopping = (JobStatus.CANCELLING, JobStatus.CANCELLED)
    if job.supports(Capability.CANCEL):  # the job the submit created is cancelled on the platform
        assert job.refresh().status in stopping and job.record is not None and job.record.status in stopping


def test_a_cancel_from_a_view_older_than_the_submits_answer_reaches_the_platform(
    bound: Binding, tmp_path: Path, store: JobStore
) -> None:
    spec, failed = submit_left_unanswered(bound, tmp_path, store)
    opened = api.open_job(failed.id, store=store, client=bound.client())  # `fth cancel` reads the record ...
    job = api.submit(spec, bound.provider, store=store, client=bound.client())  # ... a retry gets its answer ...
    if job.supports(Capability.CANCEL):
        api.control(opened, "cancel")  # ... and the cancel goes to the job the retry created
        assert job.refresh().status in (JobStatus.CANCELLING, JobStatus.CANCELLED)


def test_secrets_never_reach_the_store(bound: Binding, tmp_path: Path, store: JobStore) -> None:
    job = submit(bound, tmp_path, store)
    bound.advance(job.remote_id, "failed")
    job.wait(sleep=no_sleep, timeout=60)
    if bound.secret:
        for path in tmp_path.rglob("jobs.db*"):
            assert bound.secret.encode() not in path.read_bytes()
