"""Where the independent pieces of a step run: here, or on a Dask cluster (DASK_SCHEDULER).

A step hands its pieces (one glacier, one block of tile rows, one fold x member) to a
`Pool` and gets their results back in order. `LocalPool` runs them in this process, as
before; `DaskPool` makes this engine process the Dask client: pieces become tasks on
workers that run the same environment (dask.distributed schedules, retries the tasks of a
lost worker and places GPU work; nothing here schedules). Pieces write their own outputs
atomically, so a piece that ran twice or died half-way leaves a complete file or none.

Progress and cancel cross the cluster: a task's `Progress` sends its fraction and messages
as Dask events to the client (`log_event` / `subscribe_topic`), and checks a Dask `Event`
that the client sets on cancel, so running tasks stop and remove their partial files.
dask is imported only here and only when a scheduler is named: QGIS never imports it.
"""
from __future__ import annotations

import abc
import os
import queue
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .progress import Progress, SubProgress

PARAMETER = "DASK_SCHEDULER"
CONNECT_TIMEOUT_S = 10
WORKER_WAIT_S = 30


class Pool(abc.ABC):
    """Runs `fn(*common, *item, progress=...)` for each item; results in item order. `common`
    holds what every piece needs (an inventory, options): a cluster receives it once."""

    workers = 1
    remote = False

    @abc.abstractmethod
    def run(self, fn, items, progress: Progress, gpu: bool = False, done=None, common=()) -> list:
        """The results of the pieces, in item order; `done(i, result)` gives the message
        shown when piece i finishes; `gpu` asks for workers with a GPU resource."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _ThreadTask(SubProgress):
    """A piece's progress in a thread: messages and cancel from the step's progress; its
    fraction is its own (the step counts finished pieces)."""

    def __init__(self, parent: Progress):
        super().__init__(parent, 0.0, 0.0)

    def update(self, fraction, message=None):
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        if message:
            self.info(message)
        self.check()


class LocalPool(Pool):
    """Pieces in this process: one after another, or in `threads` threads (I/O-bound work
    such as HTTP range reads)."""

    def __init__(self, threads: int = 1):
        self.workers = max(1, int(threads))

    def run(self, fn, items, progress: Progress, gpu: bool = False, done=None, common=()) -> list:
        items = [(*common, *item) for item in items]
        n = max(len(items), 1)
        results: list = [None] * len(items)
        if self.workers == 1:
            for i, item in enumerate(items):
                progress.check()
                results[i] = fn(*item, progress=progress.sub(i / n, (i + 1) / n))
                progress.update((i + 1) / n, done(i, results[i]) if done else None)
            return results
        with ThreadPoolExecutor(self.workers) as pool:
            futures = {pool.submit(fn, *item, progress=_ThreadTask(progress)): i
                       for i, item in enumerate(items)}
            try:
                for k, fut in enumerate(as_completed(futures), start=1):
                    i = futures[fut]
                    results[i] = fut.result()
                    progress.update(k / n, done(i, results[i]) if done else None)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return results


class WorkerProgress(Progress):
    """A task's progress on a Dask worker: fractions (at most two a second) and messages go
    to the client as events; cancel is a Dask Event the client sets."""

    def __init__(self, topic: str, task: int, cancel: str):
        super().__init__()
        self.topic, self.task, self.cancel = topic, task, cancel
        self._sent = self._checked = 0.0

    def _log(self, **msg):
        from distributed import get_worker
        try:
            get_worker().log_event(self.topic, dict(task=self.task, **msg))
        except (ValueError, RuntimeError):  # not on a worker (a local test of this class)
            pass

    def update(self, fraction, message=None):
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        now = time.monotonic()
        if now - self._sent > 0.5:
            self._log(fraction=self.fraction)
            self._sent = now
        if message:
            self.info(message)
        self.check()

    def info(self, message):
        self._log(info=str(message))

    def warning(self, message):
        self._log(warning=str(message))

    def is_cancelled(self):
        now = time.monotonic()
        if not self.cancelled and now - self._checked > 1.0:
            self._checked = now
            from distributed import Event
            try:
                self.cancelled = Event(self.cancel).is_set()
            except Exception:  # the scheduler is gone: the client reports that, not the task
                pass
        return self.cancelled


def _remote(fn, common, item, topic, task, cancel, threads):
    """A piece on a worker. Torch threads are the worker's share of its cores (a worker
    with several task threads must not let each take them all), unless the worker was
    started with OMP_NUM_THREADS (several workers on one machine)."""
    if threads and not os.environ.get("OMP_NUM_THREADS"):
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            pass
    return fn(*common, *item, progress=WorkerProgress(topic, task, cancel))


def _check_engine():
    """Run on each worker: can it import this engine, and which version is it."""
    from importlib.metadata import PackageNotFoundError, version
    import glacier_mapper_plugin.core.cluster  # noqa: F401 (the worker must import the science it runs)
    try:
        return version("glacier-mapper"), os.cpu_count()
    except PackageNotFoundError:
        return "?", os.cpu_count()


class SchedulerLost(ValueError):
    """The scheduler went away mid-run: what the pieces finished is kept for the rerun."""


class DaskPool(Pool):
    """The engine as a Dask client of the scheduler at `address` ("tcp://host:8786",
    "host:8786", or the scheduler file that `dask scheduler --scheduler-file` and
    dask-jobqueue/dask-mpi write)."""

    remote = True

    def __init__(self, address: str, progress: Progress | None = None):
        try:
            from distributed import Client
        except ImportError:
            raise ValueError(f"{PARAMETER}: this engine has no dask.distributed: reinstall it "
                             "(make setup, or glacier_mapper:install_engine)") from None
        self.address = str(address).strip()
        kwargs = dict(timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        if self.address.endswith(".json"):
            self.address = str(Path(self.address).expanduser())
            if not Path(self.address).is_file():
                raise ValueError(f"{PARAMETER}: no scheduler file {self.address}: start the "
                                 f"scheduler with --scheduler-file {self.address}, or give its address")
            kwargs["scheduler_file"] = self.address
        else:
            kwargs["address"] = self.address if "://" in self.address else "tcp://" + self.address
        try:
            self.client = Client(**kwargs)
        except (OSError, TimeoutError) as err:
            raise ValueError(f"{PARAMETER} {self.address}: cannot reach the Dask scheduler ({err}). "
                             "Start one (`.venv/bin/dask scheduler`) and workers, or leave "
                             f"{PARAMETER} empty to run here") from None
        try:
            self.client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except (TimeoutError, OSError):
            self.client.close()
            raise ValueError(f"{PARAMETER} {self.address}: no Dask worker joined the scheduler "
                             f"in {WORKER_WAIT_S} s: start workers with `.venv/bin/dask worker "
                             f"{self.address}`") from None
        try:
            engines = self.client.run(_check_engine)
        except Exception as err:
            self.client.close()
            raise ValueError(f"{PARAMETER} {self.address}: the workers cannot run this engine "
                             f"({type(err).__name__}: {err}): start them from the engine's "
                             "environment (.venv/bin/dask worker)") from None
        info = self.client.scheduler_info()["workers"]
        self.workers = len(info)
        self.cores = min(c for _, c in engines.values())
        self.threads = {w: max(1, int(v.get("nthreads", 1))) for w, v in info.items()}
        self.gpu_workers = sum(1 for v in info.values() if v.get("resources", {}).get("GPU"))
        if progress is not None:
            versions = {v for v, _ in engines.values()}
            progress.info(f"Dask scheduler {self.address}: {self.workers} worker(s), "
                          f"{sum(self.threads.values())} thread(s), {self.gpu_workers} with a GPU"
                          + (f"; engine versions differ between workers: {sorted(versions)}"
                             if len(versions) > 1 else ""))

    def _torch_threads(self) -> int:
        """Cores per task thread of the smallest worker (dask workers default to one thread
        per core, so this is 1 then; `--nthreads 1` gives a task all the worker's cores)."""
        return max(1, self.cores // max(self.threads.values()))

    def run(self, fn, items, progress: Progress, gpu: bool = False, done=None, common=()) -> list:
        items = list(items)
        if not items:
            return []
        if gpu and not self.gpu_workers:
            raise ValueError(f"{PARAMETER} {self.address}: DEVICE is cuda but no worker has a GPU: "
                             "start GPU workers with `dask worker ... --resources GPU=1`")
        run_id = uuid.uuid4().hex[:12]
        topic, cancel = f"glacier-mapper-{run_id}", f"glacier-mapper-cancel-{run_id}"
        events: queue.SimpleQueue = queue.SimpleQueue()
        self.client.subscribe_topic(topic, lambda event: events.put(event[1]))
        threads = self._torch_threads()
        shared = [self._scatter(c) for c in common]  # sent once, not per task
        futures = [self.client.submit(_remote, fn, shared, item, topic, i, cancel, threads, pure=False,
                                      key=f"{getattr(fn, '__name__', 'piece')}-{i}-{run_id}",
                                      resources={"GPU": 1} if gpu else None)
                   for i, item in enumerate(items)]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(items)
        partial: dict[int, float] = {}
        n, finished, closed = len(items), 0, set()
        from distributed import as_completed as dask_completed
        pending = dask_completed(futures, loop=self.client.loop)
        try:
            while finished < n:
                self._relay(events, partial, closed, progress)
                batch = pending.next_batch(block=False) if pending.has_ready() else []
                for fut in batch:
                    i = index[fut.key]
                    results[i] = self._result(fut)
                    partial.pop(i, None)
                    closed.add(i)
                    finished += 1
                    progress.update((finished + sum(partial.values())) / n, done(i, results[i]) if done else None)
                if not batch:
                    self._alive()
                    progress.update((finished + sum(partial.values())) / n)
                    time.sleep(0.1)
            self._relay(events, partial, closed, progress)
            return results
        except BaseException:
            self._cancel(futures, cancel)
            raise
        finally:
            try:
                self.client.unsubscribe_topic(topic)
            except Exception:
                pass

    @staticmethod
    def _relay(events, partial, closed, progress):
        """Task events to the step's progress (in this, the main, thread); a late fraction
        of a finished task is not counted twice."""
        while True:
            try:
                msg = events.get_nowait()
            except queue.Empty:
                return
            if "fraction" in msg and msg["task"] not in closed:
                partial[msg["task"]] = float(msg["fraction"])
            if msg.get("info"):
                progress.info(msg["info"])
            if msg.get("warning"):
                progress.warning(msg["warning"])

    def _scatter(self, value, tries: int = 5):
        """`value` on the workers. A worker killed a moment ago is still on the scheduler's
        list until its heartbeat is missed, and a scatter that picks it fails with a closed
        connection: try again while the scheduler drops it."""
        from distributed.comm.core import CommClosedError
        for attempt in range(tries):
            try:
                return self.client.scatter(value, hash=False)
            except (CommClosedError, OSError):
                self._alive()
                time.sleep(1 + attempt)
        raise SchedulerLost(f"{PARAMETER} {self.address}: the inputs could not be sent to the workers "
                            f"in {tries} tries (workers lost?): check them and run again to resume")

    def _alive(self):
        if self.client.status not in ("running", "connecting"):
            raise SchedulerLost(f"{PARAMETER} {self.address}: the Dask scheduler went away during "
                                "the run. Finished pieces are kept: run again (with a scheduler) "
                                "to resume")

    def _result(self, fut):
        from distributed.client import FutureCancelledError
        try:
            return fut.result()
        except FutureCancelledError:
            self._alive()
            raise SchedulerLost(f"{PARAMETER} {self.address}: the Dask scheduler went away or dropped "
                                "this run's tasks (restarted?). Finished pieces are kept: run again "
                                "to resume") from None
        except Exception as err:
            if type(err).__name__ == "KilledWorker":
                raise ValueError(f"{PARAMETER} {self.address}: task {fut.key} killed every worker "
                                 "it ran on (out of memory?): try smaller tiles or batches, or "
                                 "workers with more memory") from None
            raise

    def _cancel(self, futures, cancel):
        """Tell running and queued tasks to stop (they raise Cancelled at their next check
        and remove their partial files), wait for them, then drop what is left."""
        from distributed import Event
        try:
            Event(cancel, client=self.client).set()
            deadline = time.monotonic() + 15
            while any(f.status == "pending" for f in futures) and time.monotonic() < deadline:
                time.sleep(0.1)
            self.client.cancel(futures)
        except Exception:  # the scheduler is gone: nothing left to cancel
            pass

    def close(self):
        try:
            self.client.close(timeout=5)
        except Exception:
            pass


def open_pool(address: str | None, progress: Progress | None = None, threads: int = 1) -> Pool:
    """A DaskPool when DASK_SCHEDULER names a scheduler, else a LocalPool."""
    address = (address or "").strip()
    return DaskPool(address, progress) if address else LocalPool(threads)
