"""Batch runs on a Dask cluster: each worker process loads the model once, reads its photographs itself, and
the client writes ``summary.csv`` with the same rows as a local run.

The work a worker does for a chunk of inputs is the local batch's own
(:func:`components.workflows.batch.explain_files`): photographs are placed in a private temporary folder
under their panel names (a symlink for a local file, the object's bytes for an ``s3://`` one),
explained, and their panels written to the output folder or uploaded to the output prefix. Only
the rows travel back. Tasks are idempotent, so a task lost with a worker is simply run again
elsewhere and every input still gets exactly one row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from components.base.classifier import ClassifierLike
from components.base.errors import CataractCamError
from components.base.tables import parse_csv
from components.cluster import storage
from components.cluster.storage import S3Settings
from components.workflows.batch import (
    BatchItem,
    SummaryWriter,
    _unique_names,
    explain_files,
    summary_bytes,
    summary_fields,
    summary_row,
)

__all__ = [
    "CHUNK_SIZE",
    "BatchOutcome",
    "ClusterError",
    "InOrder",
    "ModelPlugin",
    "check_address",
    "connect",
    "describe_workers",
    "load_model",
    "local_torch_threads",
    "open_client",
    "oversubscribed",
    "place_input",
    "read_summary",
    "register_model",
    "run_batch",
    "run_chunks",
    "task_failure",
    "tune_allocator",
    "worker_classifier",
]

# glibc's allocator in a worker process (mallopt's parameter numbers and values). Dask starts
# workers with MALLOC_TRIM_THRESHOLD_=65536 to hand memory back early, and setting it also stops
# glibc from raising its mmap threshold: every activation over 128 KiB is then mapped and unmapped
# afresh, paying its page faults each time, and the model ran at about half speed in a worker.
# ModelPlugin.setup keeps large blocks in the heap instead, on every worker however it was started
# (a worker holds one model and a chunk of eight photographs: its peak is what it maps anyway).
WORKER_MALLOC = {-3: 32 * 2**20, -1: 256 * 2**20, -2: 64 * 2**20}  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD


def tune_allocator() -> bool:
    """Set :data:`WORKER_MALLOC` in this process's glibc allocator; False where there is no glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return all(libc.mallopt(param, value) == 1 for param, value in WORKER_MALLOC.items())
    except (OSError, AttributeError):  # not glibc: musl and others have no mallopt
        return False


CHUNK_SIZE = 8  # inputs per task: the local batch's model batch, so both runs batch the same images
CONNECT_TIMEOUT_S = 10.0
SUMMARY_NAME = "summary.csv"
LOST_WORKER_ERROR = "The worker explaining this file stopped repeatedly; the file was not explained."


class ClusterError(CataractCamError):
    """The Dask cluster cannot be reached, refuses the model, or was lost mid-run (exit code 2 in the CLI)."""


# ================================================================ the model on the workers


def _model_location(model: str | os.PathLike[str] | None) -> str | None:
    if model is None:
        return None
    location = os.fspath(model)
    if not isinstance(location, str):
        raise TypeError(f"model must be a path, an s3:// URL or None, got {type(model).__name__}.")
    # Workers may start in another folder: a local checkpoint travels as an absolute path.
    return location if storage.is_s3(location) else str(Path(location).resolve())


def load_model(model: str | os.PathLike[str] | None, settings: S3Settings | None = None, *,
               expected_sha256: str | None = None) -> tuple[Any, str]:
    """Load a checkpoint (a path, an ``s3://`` object, or None for the shipped demo model) and its SHA-256.

    Raises:
        TypeError: ``model`` is not text, a path or None.
        StorageError: the checkpoint cannot be read.
        ClusterError: its SHA-256 is not ``expected_sha256``.
        CheckpointError: it is not a usable checkpoint.
    """
    from components.imaging.loading import sha256_bytes
    from models import DEMO_MODEL_PATH, load_classifier, load_classifier_bytes

    location = _model_location(model)
    data = storage.read_bytes(str(DEMO_MODEL_PATH) if location is None else location, settings)
    found = sha256_bytes(data)
    if expected_sha256 is not None and found != expected_sha256:
        raise ClusterError(f"The checkpoint a worker reads differs from the client's (SHA-256 {found[:12]}... "
                           f"instead of {expected_sha256[:12]}...); give every worker the same file.")
    if location is not None and storage.is_s3(location):
        return load_classifier_bytes(data), found
    return load_classifier(location), found  # a local file: its sidecar card is read too


class ModelPlugin(WorkerPlugin):
    """A Dask worker plugin: loads the checkpoint once per worker process, after checking its SHA-256.

    Registered under :attr:`name`; a worker that joins later (a restarted one included) runs
    :meth:`setup` too. ``torch_threads`` caps PyTorch's threads so that several worker processes
    on one machine do not oversubscribe its cores (None leaves the worker's setting).
    """

    def __init__(self, model: str | None, sha256: str, settings: S3Settings | None = None,
                 torch_threads: int | None = None) -> None:
        self.model, self.sha256, self.settings, self.torch_threads = model, sha256, settings, torch_threads
        self.name = f"cataract-cam-model-{sha256[:16]}"
        self.classifier: ClassifierLike | None = None

    def setup(self, worker: Any = None) -> None:
        """Load the model on this worker; raises :class:`ClusterError` when its checkpoint differs."""
        if self.torch_threads is not None:
            import cv2
            import torch

            # OpenCV's own pool too: left at the machine's cores it competes with the other workers.
            torch.set_num_threads(self.torch_threads)
            cv2.setNumThreads(self.torch_threads)
        tune_allocator()
        self.classifier, _ = load_model(self.model, self.settings, expected_sha256=self.sha256)

    def teardown(self, worker: Any = None) -> None:
        """Drop the model with the worker."""
        self.classifier = None


def register_model(client: Any, model: str | os.PathLike[str] | None, *, settings: S3Settings | None = None,
                   torch_threads: int | None = None) -> tuple[str, Any]:
    """Load ``model`` here and on every worker (now and joining later): the plugin name tasks use, and the model.

    Raises:
        TypeError: ``model`` is not text, a path or None.
        StorageError: the client cannot read the checkpoint.
        CheckpointError: it is not a usable checkpoint.
        ClusterError: a worker's checkpoint differs or cannot be loaded.
    """
    classifier, sha = load_model(model, settings)
    plugin = ModelPlugin(_model_location(model), sha, settings, torch_threads)
    try:
        client.register_plugin(plugin, name=plugin.name)
    except ClusterError:
        raise
    except Exception as exc:  # the worker's own error, re-raised here by Dask
        raise ClusterError(f"A worker could not load the model: {exc}") from None
    return plugin.name, classifier


def worker_classifier(plugin_name: str) -> Any:
    """The model this worker process loaded for ``plugin_name`` (inside a task only).

    Raises:
        ClusterError: called outside a worker, or the model was not registered there.
    """
    from distributed import get_worker

    try:
        plugin = get_worker().plugins[plugin_name]
    except (ValueError, KeyError):
        raise ClusterError("The model is not loaded on this worker; register it with register_model().") from None
    if not isinstance(plugin, ModelPlugin) or plugin.classifier is None:
        raise ClusterError("The model failed to load on this worker.")
    return plugin.classifier


# ================================================================================ clusters


def check_address(address: str) -> None:
    """Check a cluster address: ``local:N`` with N >= 1, or ``tcp://HOST:PORT``.

    Raises:
        TypeError: ``address`` is not text.
        ValueError: it is neither form, or N is not a positive integer.
    """
    if not isinstance(address, str):
        raise TypeError(f"address must be text such as local:2 or tcp://host:8786, got {type(address).__name__}.")
    if address.startswith("local:"):
        count = address[len("local:"):]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"local:N needs a positive number of workers, got {address!r}.")
    elif not address.startswith("tcp://") or ":" not in address[len("tcp://"):]:
        raise ValueError(f"Expected local:N or tcp://HOST:PORT for the cluster, got {address!r}.")


def open_client(address: str, *, timeout: float = CONNECT_TIMEOUT_S) -> Any:
    """A Dask client for ``local:N`` (a new cluster of N worker processes on 127.0.0.1) or ``tcp://HOST:PORT``.

    A cluster it started is closed with the client (``client.close()``).

    Raises:
        TypeError: ``address`` is not text.
        ValueError: ``address`` is neither form, or N is not a positive integer.
        ClusterError: the scheduler cannot be reached within ``timeout`` seconds.
    """
    from distributed import Client

    check_address(address)
    if address.startswith("local:"):
        # Quiet worker logs: a killed or restarted worker is reported through its rows instead. The
        # scheduler's HTTP endpoint takes a free port on 127.0.0.1, not 8787 that another run may hold.
        return Client(n_workers=int(address[len("local:"):]), threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR,
                      timeout=timeout, set_as_default=False)
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError):
        raise ClusterError(f"The Dask scheduler at {address} could not be reached within {timeout:g} s.") from None


@contextlib.contextmanager
def connect(address: str, *, timeout: float = CONNECT_TIMEOUT_S) -> Iterator[Any]:
    """:func:`open_client` as a context: the client, and the cluster it started, closed on exit.

    Raises:
        TypeError: ``address`` is not text.
        ValueError: ``address`` is neither form, or N is not a positive integer.
        ClusterError: the scheduler cannot be reached within ``timeout`` seconds.
    """
    client = open_client(address, timeout=timeout)
    try:
        yield client
    finally:
        client.close()


def oversubscribed(address: str) -> str | None:
    """A sentence when ``local:N`` asks for more worker processes than this machine has cores, else None.

    Such workers share the cores and each gets one thread: the run is no faster than with one
    worker per core, only heavier in memory (a model per process).
    """
    cores = os.cpu_count() or 1
    if not address.startswith("local:") or not address[6:].isdigit() or int(address[6:]) <= cores:
        return None
    return (f"{address} asks for more workers than this machine's {cores} cores: they share the cores, so the run "
            f"is no faster than local:{cores}, and each holds its own copy of the model.")


def local_torch_threads(address: str) -> int | None:
    """PyTorch threads per worker for ``local:N`` (the machine's cores shared out), None for a remote cluster."""
    if not address.startswith("local:") or not address[6:].isdigit():
        return None
    return max(1, (os.cpu_count() or 1) // max(1, int(address[6:])))


def describe_workers(client: Any) -> list[dict[str, Any]]:
    """The cluster's workers: address, threads and memory limit (bytes), in address order."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return [{"address": a, "threads": int(w.get("nthreads", 0)), "memory_limit": int(w.get("memory_limit", 0))}
            for a, w in sorted(workers.items())]


# ============================================================================ batch tasks


@dataclass
class BatchOutcome:
    """One input's result as it comes back from a worker: its place, its item and where its panel is."""

    index: int
    item: BatchItem
    panel: str = ""  # a local path or an s3:// URL; empty when no panel was written
    extra: Any = None  # what ``on_worker`` made of the item there (a thumbnail, say), when given


@dataclass(frozen=True)
class _BatchOptions:
    plugin: str
    out: str
    settings: S3Settings | None
    method: str
    target: str | None
    layer: str | None
    alpha: float
    colormap: str
    on_worker: Callable[[BatchItem], Any] | None = None
    panels: bool = True


def place_input(source: str, name: str, folder: Path, settings: S3Settings | None) -> tuple[Path, str | None]:
    """Put an input in a worker's private ``folder`` under ``name``: a link to a local file, an object's bytes.

    Returns the path and None, or the path and the error of an object that cannot be read.
    """
    suffix = PurePosixPath(storage.source_name(source)).suffix
    target = folder / f"{name}{suffix}"
    try:
        if not storage.is_s3(source):
            # A missing file stays a dangling link, so the local batch reports it in its own words.
            target.symlink_to(os.path.abspath(source))
        else:
            target.write_bytes(storage.read_bytes(source, settings))
    except storage.StorageError as exc:
        return target, str(exc)
    except OSError:  # a name too long for this worker's file system, a full disk: this input only
        return target, "The file could not be prepared for explaining on the worker."
    return target, None


def _batch_task(chunk: Sequence[tuple[int, str, str]], options: _BatchOptions) -> list[BatchOutcome]:
    """Explain one chunk of (index, source, panel name) on this worker; one outcome per input."""
    classifier = worker_classifier(options.plugin)
    s3_out = storage.is_s3(options.out)
    with tempfile.TemporaryDirectory(prefix="cataract-cam-") as tmp:
        inbox, outbox = Path(tmp) / "in", Path(tmp) / "out"
        inbox.mkdir()
        placed: list[tuple[int, str, Path]] = []
        outcomes: dict[int, BatchOutcome] = {}
        for index, source, name in chunk:
            path, error = place_input(source, name, inbox, options.settings)
            if error is None:
                placed.append((index, source, path))
            else:
                outcomes[index] = BatchOutcome(index, BatchItem(file=source, error=error))
        out_dir = (outbox if s3_out else Path(options.out)) if options.panels else None
        items = explain_files(classifier, [p for _, _, p in placed], out_dir=out_dir,
                              method=options.method, target=options.target, layer=options.layer,
                              alpha=options.alpha, colormap=options.colormap, workers=1,
                              typicality=True, attention=True,  # as the local batch of the command line
                              batch_size=max(1, len(placed)), keep_images=options.on_worker is not None)
        for (index, source, _), item in zip(placed, items, strict=True):
            item.file = source
            extra = options.on_worker(item) if options.on_worker is not None else None
            item.image = None
            panel = ""
            if item.panel_path is not None:
                panel = str(item.panel_path)
                if s3_out:
                    panel = storage.join(options.out, item.panel_path.name)
                    try:
                        storage.write_bytes(panel, item.panel_path.read_bytes(), options.settings)
                    except storage.StorageError:
                        item.error, panel = "The result picture could not be written to the output prefix.", ""
                item.panel_path = None
            if item.explanation is not None:
                # The full-size map stays here: the panel carries it, the row needs only the numbers.
                item.explanation = dataclasses.replace(item.explanation, cam=np.zeros((0, 0), np.float32))
            outcomes[index] = BatchOutcome(index, item, panel, extra)
    return [outcomes[index] for index, _, _ in chunk]


# ============================================================================ batch client


def read_summary(out: str, class_names: Sequence[str], settings: S3Settings | None = None) -> list[dict[str, str]]:
    """Rows of an earlier run's ``summary.csv`` in ``out`` (none when there is no summary yet).

    Raises:
        StorageError: the summary cannot be read, or it was written for other classes.
    """
    location = storage.join(out, SUMMARY_NAME)
    if not storage.exists(location, settings):
        return []
    header, rows = parse_csv(storage.read_bytes(location, settings).decode("utf-8"))
    if header != summary_fields(class_names):
        raise storage.StorageError("The existing summary.csv has other columns (another model's classes?); "
                                   "use another --out or remove it.")
    return rows


def _row(outcome: BatchOutcome, class_names: Sequence[str]) -> dict[str, str]:
    row = summary_row(outcome.item, class_names)
    if outcome.panel:
        row["panel"] = outcome.panel
    return row


def task_failure(exc: BaseException | None) -> str:
    """The error a row gets when its task failed for good; a usage error (bad target or layer) is raised instead.

    Raises:
        ExplainError: the task failed on a bad method, target or layer, which no retry mends.
    """
    from distributed.scheduler import KilledWorker

    from components.explanation.cam import ExplainError

    if isinstance(exc, ExplainError):
        raise exc
    if isinstance(exc, KilledWorker):
        return LOST_WORKER_ERROR
    return f"The worker failed on this file ({type(exc).__name__})."


def _failed_batch_chunk(message: str, chunk: Sequence[tuple[int, str, str]]) -> list[BatchOutcome]:
    return [BatchOutcome(i, BatchItem(file=s, error=message)) for i, s, _ in chunk]


def run_batch(client: Any, sources: Sequence[str], out: str, *, model: str | os.PathLike[str] | None = None,
              settings: S3Settings | None = None, method: str = "gradcam", target: str | None = None,
              layer: str | None = None, alpha: float = 0.5, colormap: str = "jet", resume: bool = False,
              chunk_size: int = CHUNK_SIZE, torch_threads: int | None = None, checkpoint_every_s: float = 10.0,
              on_worker: Callable[[BatchItem], Any] | None = None, panels: bool = True,
              progress: Callable[[int, int], None] | None = None,
              on_outcome: Callable[[BatchOutcome], None] | None = None, keep: bool = True) -> list[BatchOutcome]:
    """Explain ``sources`` (paths or ``s3://`` objects, see :func:`storage.collect_sources`) on the cluster.

    Panels (unless ``panels`` is False) go to ``out`` (a folder or an ``s3://`` prefix) from the
    workers; ``summary.csv`` is written there by this client with the local batch's rows in input
    order: in a folder each row is appended and flushed as soon as the rows before it are in, as
    a local run does; under a prefix (objects cannot be appended to) the whole file is written
    every ``checkpoint_every_s`` seconds and at the end, including when the run is interrupted.
    With ``resume`` the inputs already in ``out``'s summary are skipped and their rows kept.
    ``on_worker(item)``, an importable function, runs on the worker for each item (failed ones too)
    while it still holds its decoded photograph and full-size map; its result comes back as
    :attr:`BatchOutcome.extra` (the dashboard makes its thumbnails so). ``on_outcome`` sees each
    outcome here, in input order. Returns the outcomes of the inputs run now, in input order, or
    none with ``keep=False`` (for runs of any size: nothing then grows with the number of inputs
    but a set of the indices done and, under a prefix, the summary's rows as text).

    Raises:
        TypeError: ``sources`` is not a sequence of text.
        ValueError: ``alpha`` outside [0, 1] or ``chunk_size`` < 1.
        ClusterError: the model cannot be loaded on the workers, or the scheduler was lost.
        StorageError: the output or the earlier summary cannot be used.
        ExplainError: a bad method, target or layer.
        CheckpointError: the model cannot be loaded.
    """
    if isinstance(sources, str) or not all(isinstance(s, str) for s in sources):
        raise TypeError("sources must be a sequence of paths or s3:// URLs as text.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie between 0 and 1, got {alpha}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    plugin, classifier = register_model(client, model, settings=settings, torch_threads=torch_threads)
    class_names = list(classifier.class_names)
    local_out = not storage.is_s3(out)
    writer: SummaryWriter | None = None
    earlier: list[dict[str, str]] = []
    if local_out:
        Path(out).mkdir(parents=True, exist_ok=True)
        try:
            writer = SummaryWriter(Path(out) / SUMMARY_NAME, class_names, resume=resume)
        except ValueError:
            raise storage.StorageError("The existing summary.csv has other columns (another model's classes?); "
                                       "use another --out or remove it.") from None
        except OSError:
            raise storage.StorageError("The output folder cannot be written.") from None
        done_files = writer.done
    else:
        earlier = read_summary(out, class_names, settings) if resume else []
        done_files = frozenset(r["file"] for r in earlier)
    names = _unique_names([Path(storage.source_name(s)) for s in sources])  # as the local batch names them
    todo = [(i, s, names[i]) for i, s in enumerate(sources) if s not in done_files]
    options = _BatchOptions(plugin, out, settings, method, target, layer, alpha, colormap, on_worker, panels)
    kept: list[BatchOutcome] = []
    rows: list[dict[str, str]] = list(earlier)

    def emit(outcome: BatchOutcome) -> None:
        if writer is not None:
            writer.add_row(_row(outcome, class_names))
        else:
            rows.append(_row(outcome, class_names))
        if on_outcome is not None:
            on_outcome(outcome)
        if keep:
            kept.append(outcome)

    def save() -> None:
        if writer is None:
            storage.write_bytes(storage.join(out, SUMMARY_NAME), summary_bytes(rows, class_names), settings)

    in_order = InOrder([i for i, _, _ in todo], emit)
    chunks = [list(todo[k:k + chunk_size]) for k in range(0, len(todo), chunk_size)]
    try:
        run_chunks(client, _batch_task, chunks, options, in_order.add, failed=_failed_batch_chunk, save=save,
                   checkpoint_every_s=checkpoint_every_s, progress=in_order.progress(progress))
    finally:
        if writer is not None:
            writer.close()
    return kept


class InOrder:
    """Outcomes that arrive in any order handed on in the order of ``indices``, each as soon as it can be.

    Only those that arrived ahead of a missing one are held: about the work in flight.
    """

    def __init__(self, indices: Sequence[int], emit: Callable[[Any], None]) -> None:
        self._indices = indices
        self._emit = emit
        self.emitted = 0
        self._waiting: dict[int, Any] = {}

    def add(self, outcome: Any) -> None:
        self._waiting[outcome.index] = outcome
        while self.emitted < len(self._indices) and self._indices[self.emitted] in self._waiting:
            self._emit(self._waiting.pop(self._indices[self.emitted]))
            self.emitted += 1

    def progress(self, report: Callable[[int, int], None] | None) -> Callable[[int, int], None] | None:
        """``report`` told how many have been handed on (not merely arrived), for progress bars and checkpoints."""
        if report is None:
            return None
        return lambda _arrived, total: report(self.emitted, total)


def run_chunks(client: Any, task: Callable[..., list[Any]], chunks: Sequence[Sequence[tuple[Any, ...]]],
               options: Any, deliver: Callable[[Any], None], *, failed: Callable[[str, Any], list[Any]],
               save: Callable[[], None] | None = None, checkpoint_every_s: float = 10.0,
               progress: Callable[[int, int], None] | None = None) -> None:
    """Run ``task(chunk, options)`` for every chunk on the cluster and ``deliver`` each result once.

    A chunk is a sequence of tuples whose first element is the input's index; a task returns
    objects with an ``index``. Results stream back as tasks finish; a result that arrives twice
    (a task run again after its worker died) is delivered once. A chunk whose task fails for good
    gets ``failed(message, chunk)`` instead. ``save`` runs every ``checkpoint_every_s`` seconds
    and always at the end, an interruption included.

    Raises:
        ClusterError: the scheduler was lost.
        ExplainError: a task failed on a bad method, target or layer.
    """
    from concurrent.futures import CancelledError

    from distributed import as_completed

    total = sum(len(c) for c in chunks)
    delivered: set[int] = set()
    futures = [client.submit(task, list(chunk), options, pure=False, retries=1) for chunk in chunks]
    chunk_of = {f.key: c for f, c in zip(futures, chunks, strict=True)}
    last_save = time.monotonic()
    try:
        if progress is not None:
            progress(0, total)
        for future in as_completed(futures, loop=client.loop):
            chunk = chunk_of[future.key]
            if future.status == "cancelled":
                raise ClusterError("The connection to the Dask scheduler was lost; run again with --resume "
                                   "to finish the remaining inputs.")
            try:
                outcomes = (failed(task_failure(future.exception()), chunk) if future.status == "error"
                            else future.result())
            except (OSError, CancelledError):  # the scheduler died between the status and the result
                raise ClusterError("The connection to the Dask scheduler was lost; run again with --resume "
                                   "to finish the remaining inputs.") from None
            for outcome in outcomes:
                if outcome.index not in delivered:  # a task run twice still gives one row
                    delivered.add(outcome.index)
                    deliver(outcome)
            if progress is not None:
                progress(len(delivered), total)
            if save is not None and time.monotonic() - last_save >= checkpoint_every_s:
                save()
                last_save = time.monotonic()
    finally:
        with contextlib.suppress(Exception):
            client.cancel(futures)
        if save is not None:
            save()
