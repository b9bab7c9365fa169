"""Executors: where the per-study work of build, render and recipes runs.

Every pipeline step that is heavy per study (reading volumes, measuring structures, writing
frames) hands a list of jobs and a top-level function to an executor and gets each job's
outcome back as it finishes. Outputs never depend on the executor: callers key outcomes by
job, and everything written is sorted, so a dataset built or rendered on a Ray cluster is
byte-identical to the local one. The driver only ever holds what the function returns
(compact per-study records), never a volume.

* ``local`` (default): in this process for one worker (no start-up, no pickling), else a
  process pool whose workers ignore Ctrl-C and SIGTERM (which a terminal or a supervisor sends
  to the whole process group): the driver stops them at once, so none is left behind.
* ``ray``: Ray tasks on a running cluster (``--address auto`` or ``ray://HOST:PORT``) or on a
  local one started here. A task whose worker dies is retried by Ray (``max_retries``); an
  exception raised by the function itself is the job's outcome, not retried.
  ``pip install 'voxqa[ray]'``; the cluster's workers need voxqa installed and the input
  paths readable.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from voxqa.errors import InputError, MissingExtra

RAY_MAX_RETRIES = 3  # a worker killed mid-task (OOM, node lost) is retried this often


class Outcome(Protocol):
    def result(self) -> Any:
        """The function's return value, or its exception raised again."""
        ...


class Executor(Protocol):
    name: str

    def run(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[tuple[int, Outcome]]:
        """(job index, outcome) for every job, as each finishes (in any order)."""
        ...

    def stop(self) -> None:
        """Cancel what has not finished (Ctrl-C, a strict failure); safe to call twice."""
        ...


@dataclass
class _Done:
    value: Any = None
    error: BaseException | None = None

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


@contextmanager
def _interrupts_as_flag() -> Iterator[threading.Event]:
    """While waiting on the pool, Ctrl-C and SIGTERM only set a flag (in the main thread): a
    KeyboardInterrupt raised inside the pool's condition variables can leave a lock held and
    hang the exit; the caller raises it at a safe point instead, and stops the workers (a
    SIGTERM's default, ending the driver alone, would leave them blocked forever)."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {sig: signal.signal(sig, lambda *_: flag.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _leave_interrupts_to_the_driver() -> None:
    """Workers leave Ctrl-C and SIGTERM to the driver, which stops them (``LocalExecutor.stop``):
    no worker tracebacks, no pool broken under the driver before it can stop it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class LocalExecutor:
    """This process for one worker, else a process pool of ``workers``."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    @classmethod
    def from_options(cls, workers: int, address: str | None) -> LocalExecutor:
        """``--executor local --workers N``; there is no cluster to address."""
        if address is not None:
            raise InputError("--address is for --executor ray")
        return cls(workers)

    def run(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[tuple[int, Outcome]]:
        if self.workers == 1:
            for i, job in enumerate(jobs):
                try:
                    yield i, _Done(fn(job))
                except Exception as exc:  # noqa: BLE001 - the job's outcome, raised by result()
                    yield i, _Done(error=exc)
            return
        with _interrupts_as_flag() as interrupted:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_leave_interrupts_to_the_driver)
            futures: dict[Future, int] = {self._pool.submit(fn, job): i for i, job in enumerate(jobs)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=futures.__getitem__):
                    yield futures[fut], fut
                if interrupted.is_set():  # raised here, never inside the pool's locks
                    raise KeyboardInterrupt
        self._pool.shutdown()
        self._pool = None

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:  # they ignore SIGTERM; what they leave half-written has a temp name
            proc.kill()
        for proc in procs:
            proc.join(timeout=5)
        # at interpreter exit concurrent.futures wakes every pool's manager thread through a
        # pipe, unlocked; the pipe of a pool whose workers were killed may be closed by then
        # ("Exception ignored ... Bad file descriptor" on stderr). Once that thread has ended
        # there is nothing to wake: take it off the exit list (Python 3.11's
        # ``_threads_wakeups``; absent elsewhere, then nothing to do).
        manager = getattr(pool, "_executor_manager_thread", None)
        if manager is not None:
            manager.join(timeout=5)
            if not manager.is_alive():
                import concurrent.futures.process as pool_module

                getattr(pool_module, "_threads_wakeups", {}).pop(manager, None)


class RayExecutor:
    """Ray tasks: on the cluster at ``address``, or a local one (``num_cpus``) started here."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise MissingExtra("--executor ray needs Ray: pip install 'voxqa[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True)
        self._pending: list[Any] = []

    @classmethod
    def from_options(cls, workers: int, address: str | None) -> RayExecutor:
        """``--executor ray [--address A]``; without an address, a local Ray with ``workers`` CPUs."""
        return cls(address, num_cpus=workers if workers > 1 else None)

    def run(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[tuple[int, Outcome]]:
        ray = self.ray
        task = ray.remote(max_retries=RAY_MAX_RETRIES, retry_exceptions=False)(fn)
        refs = [task.remote(job) for job in jobs]
        index = {ref: i for i, ref in enumerate(refs)}
        self._pending = list(refs)
        while self._pending:
            done, self._pending = ray.wait(self._pending, num_returns=1)
            for ref in done:
                try:
                    yield index[ref], _Done(ray.get(ref))
                except ray.exceptions.RayTaskError as exc:  # the function raised: its own error
                    yield index[ref], _Done(error=exc.cause if isinstance(exc.cause, BaseException) else exc)

    def stop(self) -> None:
        pending, self._pending = self._pending, []
        for ref in pending:
            self.ray.cancel(ref, force=True)


#: ``--executor NAME`` -> the executor built from ``--workers`` and ``--address``.
EXECUTORS: dict[str, Callable[[int, str | None], Executor]] = {
    "local": LocalExecutor.from_options,
    "ray": RayExecutor.from_options,
}


def make_executor(name: str = "local", workers: int = 1, address: str | None = None) -> Executor:
    """The executor ``--executor NAME`` names; ``workers`` is the local pool size or the CPUs
    of a Ray cluster started here (ignored with ``address``)."""
    if name not in EXECUTORS:
        raise InputError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")
    return EXECUTORS[name](workers, address)
