"""The job runner: attribution work on a worker thread, off the request loop.

A job is a list of cells (examples x models x methods) run in order on one worker thread
(the model is the bottleneck; more threads on the same model would only compete for the
same cores). Requests submit and poll; a job can be cancelled while queued or running
(the model wrapper in :mod:`.compute` stops it at the next forward). The queue is
bounded, finished jobs are kept for polling and export up to a bound, and the worker
survives anything a cell raises.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .compute import Cancelled, Cell

__all__ = ["Job", "JobRunner", "QueueFull"]

log = logging.getLogger("whybox.app")

_DONE = ("done", "failed", "cancelled")


class QueueFull(Exception):
    """Too many jobs queued or running."""


@dataclass
class Job:
    """One submitted job and what it has produced so far."""

    id: str
    workspace: str
    request: dict[str, Any]
    tasks: list[tuple[str, Callable[[Callable[[], None]], Cell]]]
    status: str = "queued"  # queued | running | done | failed | cancelled
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cells: list[Cell] = field(default_factory=list)
    error: str | None = None
    current: str = ""
    cancel_event: threading.Event = field(default_factory=threading.Event)
    exports: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Cells in the job."""
        return len(self.tasks)

    @property
    def finished_ok(self) -> bool:
        """Whether every cell ran (some may carry their own error)."""
        return self.status == "done"

    def check(self) -> None:
        """Raise :class:`~.compute.Cancelled` once the job is cancelled."""
        if self.cancel_event.is_set():
            raise Cancelled()

    def snapshot(self, *, results: bool = True, since: int = 0) -> dict[str, Any]:
        """The job as JSON: status, progress and (``results``) the cells so far, from
        cell ``since`` on (a poller asks only for the cells it has not seen)."""
        cells = list(self.cells)  # the worker appends meanwhile: one consistent view
        done = len(cells)
        out: dict[str, Any] = {
            "id": self.id,
            "workspace": self.workspace,
            "status": self.status,
            "progress": {
                "done": done,
                "total": self.total,
                "fraction": done / self.total if self.total else 1.0,
                "current": self.current,
            },
            "error": self.error,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "request": self.request,
        }
        if results:
            out["cells_from"] = min(since, done)
            out["cells"] = [c.to_json() for c in cells[since:]]
        return out


class JobRunner:
    """A bounded queue of jobs and one worker thread (started on first use).

    Parameters
    ----------
    max_pending : int
        Jobs queued or running at once; :meth:`submit` raises :class:`QueueFull` beyond.
    keep : int
        Finished jobs kept (oldest forgotten first).
    """

    def __init__(self, *, max_pending: int = 8, keep: int = 64) -> None:
        self.max_pending = max_pending
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- submitting and reading ----------------------------------------------------------
    def submit(
        self,
        *,
        workspace: str,
        request: dict[str, Any],
        tasks: list[tuple[str, Callable[[Callable[[], None]], Cell]]],
    ) -> Job:
        """Queue a job of ``(description, task)`` pairs; each task is called with the
        job's cancel check and returns a :class:`~.compute.Cell`."""
        with self._lock:
            if self._closed:
                raise QueueFull("the server is shutting down")
            pending = sum(1 for j in self._jobs.values() if j.status in ("queued", "running"))
            if pending >= self.max_pending:
                raise QueueFull(
                    f"{pending} jobs are already queued or running (limit {self.max_pending}); "
                    "wait for them or cancel one"
                )
            job = Job(id=uuid.uuid4().hex[:16], workspace=workspace, request=request, tasks=tasks)
            self._jobs[job.id] = job
            self._forget_old()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="whybox-app-worker", daemon=True
                )
                self._thread.start()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job:
        """The job called ``job_id``; ``KeyError`` when unknown or forgotten."""
        with self._lock:
            return self._jobs[job_id]

    def jobs(self) -> list[Job]:
        """Known jobs, newest first."""
        with self._lock:
            return list(reversed(self._jobs.values()))

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop; a queued job is cancelled at once."""
        job = self.get(job_id)
        job.cancel_event.set()
        with self._lock:
            if job.status == "queued":
                job.status = "cancelled"
                job.finished = time.time()
        return job

    def close(self, timeout: float = 5.0) -> None:
        """Cancel everything and stop the worker."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                job.cancel_event.set()
        self._queue.put(None)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.status in _DONE]
        for job in finished[: max(0, len(finished) - self.keep)]:
            self._jobs.pop(job.id, None)

    # -- the worker ---------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._run(job)
            except Exception:  # never lose the worker
                log.exception("job %s crashed", job.id)
                job.status, job.error, job.finished = "failed", "internal error", time.time()

    def _run(self, job: Job) -> None:
        with self._lock:
            if job.status != "queued":
                return  # cancelled while queued
            job.status, job.started = "running", time.time()
        try:
            for description, task in job.tasks:
                job.check()
                job.current = description
                cell = task(job.check)
                job.cells.append(cell)
            job.current = ""
            job.status = "done"
        except Cancelled:
            job.status = "cancelled"
        except Exception as error:
            log.exception("job %s failed", job.id)
            job.status, job.error = "failed", f"{type(error).__name__}: {error}"
        finally:
            job.finished = time.time()
