"""FineTuneJob: the one interface every platform adapter implements.

What differs per platform lives in the subclass (the abstract methods and the class data); what is the
same everywhere lives here once: status mapping, upload de-duplication, retries, persistence to the job
store, `wait` with backoff and a progress display, and plain records for reports.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from finetune_hub.errors import (
    ConfigError,
    FthError,
    InvalidRequest,
    ProviderError,
    UnsupportedFeature,
    WaitTimedOut,
)
from finetune_hub.records import (
    Capability,
    Checkpoint,
    CostEstimate,
    JobEvent,
    JobResult,
    JobStatus,
    Problem,
    to_plain,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from finetune_hub.data import DatasetStats
    from finetune_hub.pricing import Catalog
    from finetune_hub.spec import FineTuneSpec
    from finetune_hub.store import JobRecord, JobStore

T = TypeVar("T")
MAX_RETRY_AFTER = 120.0  # seconds: a longer Retry-After is passed on as the error, not waited for


@dataclass(frozen=True)
class JobState:
    """One observation of a remote job."""

    status: JobStatus
    native: str
    error: str | None = None
    progress: float | None = None  # 0..1 where the platform reports it
    detail: str | None = None  # e.g. a secondary status


def spec_data_files(spec: FineTuneSpec) -> dict[str, Path]:
    """Role ("train", "validation") → the spec's files; with `data.validation_split`, a seeded split of the
    training file (made once, cached under FTH_HOME, in chat JSONL) stands in for both."""
    data = spec.data
    if data.validation_split is None:
        return {role: path for role, path in (("train", data.train), ("validation", data.validation)) if path}
    from finetune_hub.data import split_validation
    from finetune_hub.store import fth_home

    train, valid = split_validation(
        data.train, data.validation_split, seed=spec.seed or 0, out_dir=fth_home() / "splits", fmt=data.format
    )
    return {"train": train, "validation": valid}


def spec_data_format(spec: FineTuneSpec) -> str:
    """The record format of the files `spec_data_files` returns: the spec's, or chat JSONL for a split."""
    return "auto" if spec.data.validation_split is not None else spec.data.format


def training_stats(spec: FineTuneSpec, model: str | None) -> DatasetStats:
    """Counts of what the job trains on, for its estimate: the training share when the spec splits its file."""
    from finetune_hub import data

    return data.stats(spec_data_files(spec)["train"], model=model, fmt=spec_data_format(spec))


@dataclass(frozen=True)
class PreparedData:
    """The spec's data, converted for the platform and uploaded: role ("train", "validation") → remote ref."""

    files: dict[str, str]
    report: list[str] = field(default_factory=list)  # what the conversion changed or dropped


@dataclass
class Backoff:
    """Polling intervals: start small, grow by `factor`, never above `maximum` seconds."""

    initial: float = 2.0
    factor: float = 1.5
    maximum: float = 60.0
    _next: float = 0.0

    def reset(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        current = self._next or self.initial
        self._next = min(current * self.factor, self.maximum)
        return current


class FineTuneJob(ABC):
    """A fine-tuning job on one platform. Subclass it once per platform."""

    provider: ClassVar[str]
    #: every Capability → None when supported, or the reason it is not
    capabilities: ClassVar[Mapping[Capability, str | None]]
    #: native status string → JobStatus; strings not in the table map to UNKNOWN
    status_map: ClassVar[Mapping[str, JobStatus]]
    #: the platform's settings block in the spec (`providers: {<name>: {...}}`), validated by this model
    settings_model: ClassVar[type[BaseModel] | None] = None
    #: whether models answer only through a deployment the user names (Azure), not by their model id
    answers_through_deployments: ClassVar[bool] = False

    def __init__(
        self,
        spec: FineTuneSpec,
        *,
        client: Any = None,
        store: JobStore | None = None,
        record: JobRecord | None = None,
    ) -> None:
        self.spec = spec
        self.settings: Any = self.parse_settings(spec)
        self.store = store
        self.record = record
        self._client = client
        self._in_sync: dict[str, Any] | None = None  # answers fetched during the current `sync`

    # -- what each platform implements ---------------------------------------------------------------

    @abstractmethod
    def connect(self) -> Any:
        """Build the platform's SDK client from the settings and the environment (used when none was injected)."""

    @abstractmethod
    def check(self) -> list[Problem]:
        """Problems with the spec for this platform, found without any network call."""

    def estimate(self, stats: DatasetStats, catalog: Catalog | None = None) -> CostEstimate:
        """What the job would cost, from the dataset's token counts and the price catalog."""
        from finetune_hub import cost

        return cost.estimate(self.provider, self.spec, stats, catalog=catalog)

    @abstractmethod
    def prepare(self) -> PreparedData:
        """Convert the spec's data for the platform and upload it; never uploads the same content twice."""

    @abstractmethod
    def submit(self, prepared: PreparedData, idempotency_key: str) -> str:
        """Create the remote job and return its id. Idempotent: the key travels with the job (metadata,
        labels or tags), and a call with a key already used returns that job instead of creating another."""

    @abstractmethod
    def refresh(self) -> JobState:
        """The job's current state, fetched from the platform."""

    @abstractmethod
    def events(self, since: datetime | None = None) -> list[JobEvent]:
        """Events in time order, optionally only those after `since`."""

    @abstractmethod
    def checkpoints(self) -> list[Checkpoint]:
        """Checkpoints the platform kept, oldest first."""

    @abstractmethod
    def cancel(self) -> JobState:
        """Ask the platform to stop the job; returns the state right after asking."""

    @abstractmethod
    def result(self) -> JobResult:
        """Model id or artifact, trained tokens or billable time, and metrics of a finished job."""

    def spent(self) -> JobResult | None:
        """What a job that failed or was cancelled was still billed for (billable time, trained tokens), where
        the platform reports it; None where it does not (the default)."""
        return None

    # -- optional, declared through `capabilities` ----------------------------------------------------

    def pause(self) -> JobState:
        raise self.unsupported(Capability.PAUSE)

    def resume(self) -> JobState:
        raise self.unsupported(Capability.PAUSE)

    def predict(self, model: str, messages: list[dict[str, Any]]) -> str:
        """One chat completion from a fine-tuned (or base) model, for comparisons."""
        raise self.unsupported(Capability.PREDICT)

    def logs(self, follow: bool = False) -> Iterator[str]:
        """Log lines; platforms without logs fall back to the event messages (polled until the job ends). With
        a store, each poll is one `sync` and the lines come from the stored events, which it de-duplicates."""
        if self.store is None or self.record is None:
            if follow:
                raise ConfigError("following a job's logs needs the job store (open the job with a store)")
            yield from map(_log_line, self.retrying(self.events))
            return
        if follow:
            self._refuse_unsent("follow")
        cursor, backoff = 0, Backoff()
        while True:
            done = self.sync().status.terminal
            for seq, event in self.store.events(self.record.id, after_seq=cursor):
                cursor = max(cursor, seq)  # events come in time order, and a late one may be stamped earlier
                yield _log_line(event)
            if not follow or done:
                return
            self.retry_sleep(backoff.next())

    def account_id(self) -> str:
        """A non-secret name for the account/endpoint, so uploads are de-duplicated per account."""
        return "default"

    # -- shared behaviour ----------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.connect()
        return self._client

    @property
    def remote_id(self) -> str:
        self._refuse_unsent("ask the platform about")
        if self.record is None or self.record.remote_id is None:
            raise ConfigError(f"this {self.provider} job has not been submitted yet")
        return self.record.remote_id

    @property
    def unsent(self) -> bool:
        """Recorded, but its submit got no answer from the platform (it failed, or the process died)."""
        return self.record is not None and self.record.remote_id is None

    def _refuse_unsent(self, what: str) -> None:
        """Polling a job the platform never answered for would never end."""
        if self.record is not None and self.unsent:
            why = self.record.error or "its submit did not finish"
            raise ConfigError(
                f"{self.local_id} has no answer from the platform ({why}): nothing to {what}; submit the "
                "same spec again (its idempotency key finds the job if the platform created it after all)"
            )

    def no_result_yet(self, native: str) -> InvalidRequest:
        """The one error every adapter's result() raises before the job has succeeded."""
        return InvalidRequest(
            f"{self.provider} job {self.remote_id} is {native}: it has a result once it succeeds",
            hint=f"fth wait {self.local_id or self.remote_id}",
            status_code=409,
        )

    @property
    def local_id(self) -> str | None:
        return self.record.id if self.record else None

    @classmethod
    def map_status(cls, native: str | None) -> JobStatus:
        return cls.status_map.get(native or "", JobStatus.UNKNOWN)

    @classmethod
    def supports(cls, capability: Capability) -> bool:
        return cls.capabilities.get(capability, "not declared") is None

    @classmethod
    def fitted_suffix(cls, suffix: str) -> str:
        """`suffix` as this platform takes it: what `fth rerun` carries over from another platform's job."""
        return suffix

    @classmethod
    def unsupported(cls, capability: Capability) -> UnsupportedFeature:
        reason = cls.capabilities.get(capability) or "not declared by the adapter"
        return UnsupportedFeature(f"{cls.provider} does not support {capability.value}: {reason}")

    @classmethod
    def parse_settings(cls, spec: FineTuneSpec) -> Any:
        """The spec's `providers.<name>` block as this adapter's settings; a wrong one is a ConfigError."""
        block = spec.settings_for(cls.provider)
        if cls.settings_model is None:
            return block
        from pydantic import ValidationError

        from finetune_hub.spec import explain_validation_error

        try:
            return cls.settings_model.model_validate(block)
        except ValidationError as exc:
            source, at = f"spec providers.{cls.provider}", ("providers", cls.provider)
            found = explain_validation_error(exc, source, cls.settings_model, file=spec.source_file, at=at)
            raise ConfigError(found) from None

    def base_model(self) -> str:
        return self.spec.base_model_for(self.provider)

    def data_files(self) -> dict[str, Path]:
        """Role ("train", "validation") → the files the job trains and validates on (see `spec_data_files`)."""
        return spec_data_files(self.spec)

    def converted_data(self, out_dir: Path, *, model: str | None = None) -> tuple[dict[str, Path], list[str]]:
        """Every data file converted for this platform (role → out_dir/role/<name>.jsonl) and what changed,
        all before anything is uploaded: a bad validation file sends nothing."""
        from finetune_hub import data

        report = []
        if share := self.spec.data.validation_split:
            report.append(f"validation: {share:.0%} of {self.spec.data.train} held out (seeded)")
        paths = {}
        for role, source in self.data_files().items():
            out = out_dir / role / f"{source.stem}.jsonl"
            converted = data.convert(source, to=self.provider, out=out, fmt=self.data_format, model=model, role=role)
            changes = converted.changes
            report += [f"{role}: {change}" for change in changes]
            paths[role] = out
        return paths, report

    @property
    def data_format(self) -> str:
        """The record format of the files `data_files()` returns."""
        return spec_data_format(self.spec)

    def data_kind_problems(self) -> list[Problem]:
        """The data must match `method`: supervised examples for sft, preference pairs for dpo (a file holds one
        format throughout; `format.mixed` catches the rest). Otherwise the platform refuses it after the upload."""
        from finetune_hub.data.detect import detect
        from finetune_hub.data.formats import FORMATS, PREFERENCE_FORMATS

        dpo, fmt, name = self.spec.method == "dpo", self.spec.data.format, self.provider
        problems = []
        for path in filter(None, (self.spec.data.train, self.spec.data.validation)):
            seen = detect(path, fmt) if path.exists() and fmt in ("auto", *FORMATS) else None
            found = seen.format if seen and not seen.assumed else ""  # an unreadable file has its own finding
            if found and dpo and found not in PREFERENCE_FORMATS:
                hint = "give preference pairs ({'input', 'preferred_output', 'non_preferred_output'}), or method: sft"
                problems.append(Problem("error", f"{name}: method dpo, but {path} holds {FORMATS[found]}", hint))
            elif found in PREFERENCE_FORMATS and not dpo:
                can = self.supports(Capability.DPO)
                hint = "set method: dpo for preference tuning, or give" if can else f"{name} has no preference tuning:"
                problems.append(
                    Problem(
                        "error", f"{name}: {path} holds preference pairs; method is sft", f"{hint} supervised examples"
                    )
                )
        return problems

    def lifecycle_problems(self, catalog: Catalog | None = None) -> list[Problem]:
        """Warnings before a platform's or base model's cutoff, errors after it (from the catalog's dated rows)."""
        from finetune_hub.pricing import Catalog, retirement_problems, today

        found = retirement_problems(catalog or Catalog.load(), self.provider, self.base_model(), today())
        return [Problem(level, message) for level, message in found]

    def upload_once(
        self, path: Path, content_hash: str, upload: Callable[[Path], str], usable: Callable[[str], bool] | None = None
    ) -> str:
        """Upload `path` unless the store knows this content is already on this account (and `usable` says the
        platform still has it: a deleted or broken file is forgotten and uploaded again)."""
        account = self.account_id()
        if self.store is not None and (known := self.store.find_upload(content_hash, self.provider, account)):
            if usable is None or self.retrying(lambda: usable(known)):
                return known
            self.store.forget_upload(content_hash, self.provider, account)
        remote = self.retrying(lambda: upload(path))
        if self.store is not None:
            self.store.record_upload(content_hash, self.provider, account, remote)
        return remote

    @staticmethod
    def retry_sleep(seconds: float) -> None:
        """How `retrying` waits between attempts; tests swap in a no-op on the class or an instance."""
        time.sleep(seconds)

    def retrying(self, call: Callable[[], T], *, attempts: int = 6, sleep: Callable[[float], None] | None = None) -> T:
        """Run `call`, retrying retryable platform errors with backoff (honouring Retry-After)."""
        backoff = Backoff(initial=1.0, factor=2.0, maximum=30.0)
        wait = sleep or self.retry_sleep
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except ProviderError as exc:
                if not exc.retryable or attempt == attempts or (exc.retry_after or 0) > MAX_RETRY_AFTER:
                    raise  # (a platform that asks for an hour's wait is told to the user, not slept through)
                wait(exc.retry_after if exc.retry_after is not None else backoff.next())
        raise AssertionError("unreachable")

    def fetched(self, key: str, fetch: Callable[[], T]) -> T:
        """`fetch()`, asked once per `sync`: refresh, events and result there read the same answer."""
        if self._in_sync is None:
            return fetch()
        if key not in self._in_sync:
            self._in_sync[key] = fetch()
        return self._in_sync[key]  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Around a call that changes the platform's state inside a sync (auto-cancel): its own reads fetch anew,
        and what the sync had fetched before is dropped."""
        before, self._in_sync = self._in_sync, None
        try:
            yield
        finally:
            self._in_sync = None if before is None else {}

    def sync(self) -> JobState:
        """Refresh the state and new events from the platform and persist them (and the result when done)."""
        if self.record is not None and self.unsent:  # nothing to ask the platform about
            return JobState(self.record.status, "not submitted", error=self.record.error)
        self._in_sync = {}
        try:
            return self._sync()
        finally:
            self._in_sync = None

    def _sync(self) -> JobState:
        state = self.retrying(self.refresh)
        if self.store is None or self.record is None:
            return state
        if self.spec.budget.auto_cancel:  # cancel once the running cost passes budget.max_usd
            from finetune_hub.cost import enforce_budget

            state = enforce_budget(self, state)
        last = self.store.last_event(self.record.id)
        # Platforms stamp events coarsely (whole seconds): ask from a second earlier, the store drops repeats.
        since = last.time - timedelta(seconds=1) if last else None
        if self.supports(Capability.EVENTS):
            self.store.add_events(self.record.id, self.retrying(lambda: self.events(since)))
        fields: dict[str, Any] = {"status": state.status, "native_status": state.native}
        if state.error or state.status in (JobStatus.QUEUED, JobStatus.RUNNING):  # running again: an old error is moot
            fields["error"] = state.error
        if state.status is JobStatus.SUCCEEDED and self.record.result is None:
            result = self.retrying(self.result)
            fields.update(result=result, model=result.model, actual_usd=self.actual_cost(result))
        elif state.status in (JobStatus.FAILED, JobStatus.CANCELLED) and self.record.actual_usd is None:
            with contextlib.suppress(FthError):  # the state is what this sync must record; the bill can wait
                if (spent := self.retrying(self.spent)) is not None:
                    fields["actual_usd"] = self.actual_cost(spent)
        self.store.update(self.record.id, **fields)
        self.record = self.store.get(self.record.id)
        return state

    def actual_cost(self, result: JobResult) -> float | None:
        """What the finished job cost, from what the platform reported (trained tokens, billable time)
        and the price catalog; None where it cannot be known."""
        from finetune_hub import cost

        try:
            return cost.actual_cost(self.provider, self.spec, result)
        except ConfigError:  # a catalog.yaml to fix must not keep a finished job's result from being recorded
            return None

    def wait(
        self,
        *,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        progress: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> JobState:
        """Poll until the job reaches a terminal state or is paused (nothing happens then until `resume`), or
        `timeout` seconds pass."""
        self._refuse_unsent("wait for")
        backoff = backoff or Backoff()
        backoff.reset()
        deadline = None if timeout is None else clock() + timeout
        display = _WaitDisplay(self) if progress else None
        last: JobState | None = None
        try:
            while True:
                state = self.sync()
                if display:
                    display.update(state)
                if state.status.terminal or state.status is JobStatus.PAUSED:
                    return state
                if last is not None and state.status is not last.status:
                    backoff.reset()
                last = state
                if deadline is not None and clock() >= deadline:
                    raise WaitTimedOut(
                        f"timed out after {timeout:.0f}s waiting for {self.local_id or self.provider} "
                        f"({state.status.value})",
                        state=state,
                        hint="the job goes on: `fth wait` or `fth status` later",
                    )
                pause = backoff.next()
                sleep(pause if deadline is None else max(0.0, min(pause, deadline - clock())))
        finally:
            if display:
                display.close()

    def to_record(self) -> dict[str, Any]:
        """A plain, JSON-ready summary for reports and `--json` output. Never holds secrets."""
        return job_row(self.record, provider=self.provider, name=self.spec.name, base_model=self.base_model())


def job_row(rec: JobRecord | None, *, provider: str, name: str, base_model: str | None) -> dict[str, Any]:
    """A job as `--json` output and reports show it (also a stored job no adapter could open)."""
    plain: dict[str, Any] = to_plain(
        {
            "id": rec.id if rec else None,
            "provider": provider,
            "remote_id": rec.remote_id if rec else None,
            "name": name,
            "base_model": base_model,
            "status": rec.status if rec else JobStatus.CREATED,
            "model": rec.model if rec else None,
            "estimated_usd": rec.estimated_usd if rec else None,
            "actual_usd": rec.actual_usd if rec else None,
            "result": rec.result if rec else None,
            "error": rec.error if rec else None,
        }
    )
    return plain


class _WaitDisplay:
    """A rich progress line for `wait`: status, progress where known, and the latest event."""

    def __init__(self, job: FineTuneJob) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._job = job
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[name]}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"),
            transient=False,
        )
        self._task = self._progress.add_task("wait", total=None, name=job.local_id or job.provider, status="", last="")
        self._progress.start()

    def update(self, state: JobState) -> None:
        from rich.markup import escape

        last = ""
        if self._job.store is not None and self._job.record is not None:
            event = self._job.store.last_event(self._job.record.id)
            shown = event.message[:60] if event and event.message.lower() != state.status.value else ""
            last = escape(shown)  # shown as written, never read as markup; not the status said twice
        total = 1.0 if state.progress is not None or state.status.terminal else None
        done = 1.0 if state.status is JobStatus.SUCCEEDED else state.progress
        self._progress.update(self._task, total=total, completed=done or 0, status=state.status.value, last=last)

    def close(self) -> None:
        self._progress.stop()


def _log_line(event: JobEvent) -> str:
    return f"{event.time.isoformat()} {event.level.upper():5} {event.message}"
