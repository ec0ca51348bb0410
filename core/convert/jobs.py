"""Conversion jobs: kept in the database beside the API keys, run one at a time in a worker thread.

A job interrupted by a restart is marked failed at start, never left processing. In a fleet sharing one
PostgreSQL database every core lists every job; each job names the core that runs it (its owner), and a core
marks failed at start only its own. Progress lives in memory while a job runs and reaches the database when
it ends (and every few seconds in between).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

from inferno.core.convert import exl2
from inferno.core.convert.architectures import architecture_of
from inferno.core.convert.checkpoint import open_checkpoint
from inferno.core.convert.converter import QUANTIZATIONS, ConversionResult, Progress, convert_checkpoint
from inferno.core.database.base import Database, Row
from inferno.core.database.heartbeat import SILENT_RUNNERS
from inferno.core.database.open import open_sqlite
from inferno.errors import InfernoError, invalid_param

log = logging.getLogger(__name__)

_SAVE_EVERY_S = 2.0
_SHUTDOWN_ERROR = "interrupted by a server shutdown"
_RESTART_ERROR = "interrupted by a server restart"
_ABANDONED_ERROR = "the core running it stopped"
_COLUMNS = (
    "job_id, source, target_format, quantization, status, progress, created, started, finished, output_file, "
    "source_bytes, output_bytes, error, model_id"
)
_STORED_COLUMNS = (*_COLUMNS.split(", "), "owner")
# The same upsert in SQLite and PostgreSQL: a job's row is written whole each time.
_UPSERT = (
    f"INSERT INTO conversion_jobs ({', '.join(_STORED_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_STORED_COLUMNS))}) "
    f"ON CONFLICT (job_id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _STORED_COLUMNS[1:])}"
)


class JobStatus(Enum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ConversionJob:
    job_id: str
    source: str
    target_format: str
    quantization: str
    status: JobStatus
    progress: float
    created: float
    started: float | None
    finished: float | None
    output_file: str
    source_bytes: int = 0
    output_bytes: int = 0
    error: str = ""
    model_id: str = ""

    def estimated_seconds(self, now: float) -> float | None:
        if self.status is not JobStatus.PROCESSING or self.started is None or not 0 < self.progress < 100:
            return None
        elapsed = now - self.started
        return elapsed * (100 - self.progress) / self.progress


class JobStore:
    def __init__(self, database: Database | Path, owner: str = "") -> None:
        """database: an open Database (the caller closes it), or a SQLite file this store opens and closes.
        owner names this core among those sharing the database (stable across its restarts)."""
        self._owns_database = isinstance(database, Path)
        self._db = open_sqlite(database) if isinstance(database, Path) else database
        self._owner = owner
        # Jobs saved before owners were recorded have none: a core that restarts fails those too.
        interrupted = self._fail_unfinished("owner IN (?, '')", (owner,), _RESTART_ERROR)
        if interrupted:
            log.warning("%d conversion jobs were interrupted by a restart and are marked failed", interrupted)

    def fail_abandoned(self, cutoff: float) -> int:
        """Fails the unfinished jobs of cores silent since cutoff (heartbeat.beat); how many."""
        failed = self._fail_unfinished(f"owner IN ({SILENT_RUNNERS})", (cutoff,), _ABANDONED_ERROR)
        if failed:
            log.warning("%d conversion jobs of cores that stopped are marked failed", failed)
        return failed

    def _fail_unfinished(self, where: str, parameters: tuple[object, ...], error: str) -> int:
        """Marks failed, with error, the queued and processing jobs that also match where; how many."""
        return self._db.execute(
            "UPDATE conversion_jobs SET status = 'failed', error = ?, finished = ? "
            f"WHERE status IN ('queued', 'processing') AND {where}",
            (error, time.time(), *parameters),
        )

    def save(self, job: ConversionJob) -> None:
        self._db.execute(
            _UPSERT,
            (
                job.job_id, job.source, job.target_format, job.quantization, job.status.value,
                job.progress, job.created, job.started, job.finished, job.output_file, job.source_bytes,
                job.output_bytes, job.error, job.model_id, self._owner,
            ),
        )  # fmt: skip

    def get(self, job_id: str) -> ConversionJob | None:
        row = self._db.query_one(f"SELECT {_COLUMNS} FROM conversion_jobs WHERE job_id = ?", (job_id,))
        return _job(row) if row else None

    def all(self) -> list[ConversionJob]:
        rows = self._db.query(f"SELECT {_COLUMNS} FROM conversion_jobs ORDER BY created DESC")
        return [_job(row) for row in rows]

    def close(self) -> None:
        if self._owns_database:
            self._db.close()


def _job(row: Row) -> ConversionJob:
    (job_id, source, target, quantization, status, progress, created, started, finished, output, source_bytes,
     output_bytes, error, model_id) = row  # fmt: skip
    return ConversionJob(
        job_id=str(job_id),
        source=str(source),
        target_format=str(target),
        quantization=str(quantization),
        status=JobStatus(status),
        progress=float(progress),
        created=float(created),
        started=None if started is None else float(started),
        finished=None if finished is None else float(finished),
        output_file=str(output),
        source_bytes=int(source_bytes),
        output_bytes=int(output_bytes),
        error=str(error),
        model_id=str(model_id),
    )


class _Cancelled(Exception):
    pass


Converter = Callable[[Path, Path, str, Progress], ConversionResult]
# Told of each finished conversion: (output path: a GGUF file or an EXL2 folder) -> the model id the registry
# now serves it under.
OnConverted = Callable[[Path], str]
# The files (or folders) of the models the catalog serves now.
ServedPaths = Callable[[], Iterable[Path]]


def job_quantization(target: str, quantization: str) -> str:
    """The quantization a job stores: a GGUF type (default f16), or EXL2 bits per weight as "4.0bpw" (default
    4.0). invalid_parameters naming the field when either is not allowed."""
    if target == "gguf":
        quantization = quantization or "f16"
        if quantization not in QUANTIZATIONS:
            raise invalid_param("quantization", f"'quantization' must be one of {', '.join(QUANTIZATIONS)}")
        return quantization
    if target == "exl2":
        return exl2.bits_label(exl2.parse_bits(quantization or str(exl2.DEFAULT_BITS)))
    raise invalid_param("target_format", "'target_format' must be gguf or exl2")


def default_output_name(source_name: str, target: str, quantization: str) -> str:
    """SOURCE.QUANT.gguf for GGUF; the folder SOURCE-exl2-4.0bpw for EXL2."""
    return f"{source_name}-exl2-{quantization}" if target == "exl2" else f"{source_name}.{quantization}.gguf"


def convert_exl2_job(source: Path, output: Path, quantization: str, progress: Progress) -> ConversionResult:
    """The EXL2 converter in the shape the runner calls: quantization is the stored "4.0bpw"."""
    return exl2.convert_to_exl2(source, output, exl2.parse_bits(quantization), progress)


def _check_exl2(source: Path, output: Path, output_label: str) -> None:
    exl2.exl2_weights(source)
    if output.exists():
        raise invalid_param("output_file", f"{output_label} already exists; EXL2 output is a new folder")
    exl2.require_exl2()


class JobRunner:
    """Queues jobs on one worker thread. Paths are resolved by the caller (inside the models dirs)."""

    def __init__(
        self,
        store: JobStore,
        on_converted: OnConverted,
        converter: Converter = convert_checkpoint,
        exl2_converter: Converter = convert_exl2_job,
        served_paths: ServedPaths = tuple,
    ) -> None:
        self._store = store
        self._served_paths = served_paths
        self._on_converted = on_converted
        self._converters = {"gguf": converter, "exl2": exl2_converter}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conversion")
        self._live: dict[str, ConversionJob] = {}
        # Jobs a client cancelled; a job stopped by close() (server shutdown) fails instead.
        self._cancel: set[str] = set()
        self._closing = threading.Event()
        self._lock = threading.Lock()

    def submit(
        self, source: Path, source_label: str, output: Path, output_label: str, target: str, quantization: str
    ) -> ConversionJob:
        """Queues a conversion, or refuses it at once (bad parameters, unusable source, no GPU for EXL2)."""
        quantization = job_quantization(target, quantization)
        self._refuse_served_output(output, output_label)
        if not (source / "config.json").is_file():
            raise invalid_param(
                "source_model", f"{source_label} is not a Hugging Face model folder (no config.json)"
            )
        if target == "exl2":
            _check_exl2(source, output, output_label)
        else:  # an unsupported architecture fails now, not in the queue
            architecture_of(open_checkpoint(source))
        job = ConversionJob(
            job_id="conv_" + secrets.token_hex(6), source=source_label, target_format=target,
            quantization=quantization, status=JobStatus.QUEUED, progress=0.0, created=time.time(),
            started=None, finished=None, output_file=output_label,
        )  # fmt: skip
        with self._lock:
            self._live[job.job_id] = job
        try:
            self._store.save(job)
        except BaseException:
            with self._lock:
                del self._live[job.job_id]
            raise
        self._pool.submit(self._run, job.job_id, source, output)
        return job

    def get(self, job_id: str) -> ConversionJob:
        with self._lock:
            live = self._live.get(job_id)
        job = live or self._store.get(job_id)
        if job is None:
            raise InfernoError("not_found", f"no conversion job {job_id!r}", {"param": "job_id"})
        return job

    def all(self) -> list[ConversionJob]:
        with self._lock:
            live = dict(self._live)
        return [live.get(job.job_id, job) for job in self._store.all()]

    def cancel(self, job_id: str) -> ConversionJob:
        job = self.get(job_id)
        if job.status in (JobStatus.QUEUED, JobStatus.PROCESSING):
            with self._lock:
                elsewhere = job_id not in self._live
                if not elsewhere:
                    self._cancel.add(job_id)
            if elsewhere:
                raise invalid_param(
                    "job_id", f"conversion job {job_id!r} runs on another core; cancel it through that core"
                )
            if job.status is JobStatus.QUEUED:
                self._finish(replace(job, status=JobStatus.CANCELLED, finished=time.time()))
        return self.get(job_id)

    def _refuse_served_output(self, output: Path, output_label: str) -> None:
        """A conversion never replaces a model the catalog serves (it may be loaded, or load later)."""
        target = output.resolve()
        if any(path.resolve() == target for path in self._served_paths()):
            raise invalid_param(
                "output_file",
                f"{output_label} is a model the server serves; name another 'output_file'",
            )

    async def wait_idle(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, lambda: None)

    def close(self) -> None:
        """Stops the running job, which fails as interrupted; queued ones fail at the next start."""
        self._closing.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # --- worker thread -----------------------------------------------------------------------------------

    def _run(self, job_id: str, source: Path, output: Path) -> None:
        job = self.get(job_id)
        if job.status is not JobStatus.QUEUED:
            return
        job = replace(job, status=JobStatus.PROCESSING, started=time.time())
        self._update(job, save=True)
        last_save = time.monotonic()

        def progress(fraction: float, phase: str) -> None:
            nonlocal last_save
            if job_id in self._cancel or self._closing.is_set():
                raise _Cancelled
            current = replace(self.get(job_id), progress=round(100 * fraction, 1))
            save = time.monotonic() - last_save > _SAVE_EVERY_S
            if save:
                last_save = time.monotonic()
            self._update(current, save)

        try:
            # The catalog may have taken the path since the job was queued.
            self._refuse_served_output(output, job.output_file)
            result = self._converters[job.target_format](source, output, job.quantization, progress)
            model_id = self._on_converted(result.output)
        except _Cancelled:
            output.with_name(output.name + ".partial").unlink(missing_ok=True)
            stopped = replace(self.get(job_id), finished=time.time())
            if job_id in self._cancel:
                self._finish(replace(stopped, status=JobStatus.CANCELLED))
            else:
                self._finish(replace(stopped, status=JobStatus.FAILED, error=_SHUTDOWN_ERROR))
            return
        except InfernoError as error:
            self._finish(
                replace(self.get(job_id), status=JobStatus.FAILED, error=error.message, finished=time.time())
            )
            return
        except Exception as exc:
            log.exception("conversion %s failed", job_id)
            self._finish(
                replace(self.get(job_id), status=JobStatus.FAILED, error=str(exc), finished=time.time())
            )
            return
        self._finish(
            replace(
                self.get(job_id), status=JobStatus.COMPLETED, progress=100.0, finished=time.time(),
                source_bytes=result.source_bytes, output_bytes=result.output_bytes, model_id=model_id,
            )
        )  # fmt: skip

    def _update(self, job: ConversionJob, save: bool) -> None:
        with self._lock:
            self._live[job.job_id] = job
        if save:
            self._store.save(job)

    def _finish(self, job: ConversionJob) -> None:
        self._store.save(job)
        with self._lock:
            self._live.pop(job.job_id, None)
            self._cancel.discard(job.job_id)
