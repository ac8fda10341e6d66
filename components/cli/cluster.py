"""Cluster runs from the command line: ``--dask``, ``--s3-endpoint`` and ``--resume`` for ``batch`` and ``audit``.

``batch`` and ``audit`` hand a run over to :func:`run_batch` or :func:`run_audit` when ``--dask``
is given (or an input or ``--out`` is an ``s3://`` location, which needs a cluster); without
them nothing changes. Every failure is one line on stderr: exit code 2 for bad input, an
unreachable scheduler or storage that cannot be used, 3 when some inputs failed, 130 when
interrupted (``summary.csv`` then holds the rows done so far, for ``--resume``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from components.base.errors import CataractCamError
from components.cli.common import EXIT_OK, EXIT_PARTIAL, UsageError, check_alpha, print_json
from components.cluster import storage

__all__ = ["add_cluster_options", "run_audit", "run_batch", "wants_cluster"]


def add_cluster_options(p: argparse.ArgumentParser, *, resume: bool) -> None:
    """``--dask``, ``--s3-endpoint`` and, for ``batch``, ``--resume``."""
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run on a Dask cluster: local:N (N worker processes here) or tcp://HOST:PORT")
    p.add_argument("--s3-endpoint", metavar="URL", default=None,
                   help="S3-compatible endpoint for s3:// inputs and outputs (default: the AWS_* environment)")
    if resume:
        p.add_argument("--resume", action="store_true",
                       help="continue a run: skip the inputs already in --out's summary.csv and keep its rows")


def wants_cluster(args: argparse.Namespace, locations: Sequence[str]) -> bool:
    """True when the run goes to a cluster: ``--dask`` given, or an input or ``--out`` in object storage.

    Raises:
        UsageError: object storage without ``--dask``, or a malformed ``--dask``.
    """
    s3 = any(storage.is_s3(x) for x in [*locations, args.out])
    if args.dask is None:
        if s3:
            raise UsageError("s3:// inputs and outputs run on a Dask cluster; add --dask local:2 (or tcp://HOST:PORT).")
        return False
    from components.cluster.batch import check_address

    try:
        check_address(args.dask)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return True


def _settings(args: argparse.Namespace) -> storage.S3Settings:
    try:
        return storage.S3Settings(args.s3_endpoint)
    except storage.StorageError as exc:
        raise UsageError(str(exc)) from None


@contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[Any]:
    """The client for ``--dask``; what the cluster, the model or the storage refuses is a usage error."""
    from components.cluster.batch import connect, oversubscribed

    # Dask logs its own reconnection attempts as tracebacks; the one line below says what matters.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    note = oversubscribed(args.dask)
    if note is not None:
        print(f"Note: {note}", file=sys.stderr)
    try:
        with connect(args.dask) as client:
            yield client
    except (CataractCamError, ValueError) as exc:
        raise UsageError(str(exc).splitlines()[0]) from None


@contextmanager
def _bar() -> Iterator[Callable[[int, int], None]]:
    from tqdm import tqdm

    bar = tqdm(total=0, unit="image", file=sys.stderr, disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        bar.close()


def _check_out(out: str) -> None:
    if not storage.is_s3(out) and Path(out).exists() and not Path(out).is_dir():
        raise UsageError("--out names a file; expected a folder (new or existing) or an s3:// prefix.")


def run_batch(args: argparse.Namespace) -> int:
    """``cataract-cam batch --dask ...``: panels from the workers, ``summary.csv`` from here.

    Raises:
        UsageError: bad options, no inputs, an unreachable scheduler, unusable storage or model.
    """
    from components.cli.outputs import item_json
    from components.cluster import batch as distributed

    check_alpha(args.alpha)
    settings = _settings(args)
    _check_out(args.out)
    try:
        sources = storage.collect_sources(args.inputs, settings)
    except storage.StorageError as exc:
        raise UsageError(str(exc)) from None
    if not sources:
        raise UsageError("No image files found in the given inputs.")
    counts = {"done": 0, "failed": 0}

    def count(outcome: distributed.BatchOutcome) -> None:
        counts["done"] += 1
        counts["failed"] += bool(outcome.item.error)

    with _cluster(args) as client, _bar() as progress:
        try:
            # Only --json needs the outcomes kept; otherwise nothing grows with the number of inputs.
            outcomes = distributed.run_batch(
                client, sources, args.out, model=args.model, settings=settings, method=args.method,
                target=args.target, layer=args.layer, alpha=args.alpha, colormap=args.colormap,
                resume=args.resume, torch_threads=distributed.local_torch_threads(args.dask), progress=progress,
                on_outcome=count, keep=args.json)
        except KeyboardInterrupt:
            print("cataract-cam: interrupted; summary.csv holds the rows done so far: run again with --resume",
                  file=sys.stderr)
            return 130
    if args.json:
        # The local batch's JSON; only the panel's place comes from the worker.
        print_json([{**item_json(o.item), "panel": o.panel or None} for o in outcomes], indent=2)
    if counts["failed"]:
        print(f"cataract-cam: {counts['failed']} of {counts['done']} file(s) failed", file=sys.stderr)
    return EXIT_PARTIAL if counts["failed"] else EXIT_OK


def run_audit(args: argparse.Namespace) -> int:
    """``cataract-cam audit --dask ...``: the workers audit, this client writes ``audit.csv`` and the gallery.

    Raises:
        UsageError: bad options, no labelled images, an unreachable scheduler, unusable storage or model.
    """
    from components.cli.common import modality_option
    from components.cli.outputs import report_summary
    from components.cluster import batch as distributed
    from components.cluster.audit import labelled_sources, publish_outputs
    from components.cluster.audit import run_audit as audit_on_cluster
    from components.workflows.audit import AuditOutputs

    settings = _settings(args)
    _check_out(args.out)
    try:
        items = labelled_sources(args.data, settings)
    except CataractCamError as exc:
        raise UsageError(str(exc)) from None
    modality = modality_option(args.modality)
    threads = distributed.local_torch_threads(args.dask)
    s3_out = storage.is_s3(args.out)
    # Rows stream into audit.csv and the gallery's saved pictures, here or (for a prefix) in a
    # working folder copied up at the end: any number of images.
    with tempfile.TemporaryDirectory(prefix="cataract-cam-audit-") as tmp:
        folder = Path(tmp) if s3_out else Path(args.out)
        try:
            outputs = AuditOutputs(folder)
        except OSError:
            raise UsageError("--out cannot be written; choose a folder you may write to.") from None
        with _cluster(args) as client, _bar() as progress:
            _, classifier = audit_on_cluster(client, items, model=args.model, settings=settings, modality=modality,
                                             method=args.method, torch_threads=threads, progress=progress,
                                             on_row=outputs.add)
        shown = outputs.finish(model_name=classifier.name, demo=classifier.is_demo)
        if s3_out:
            try:
                publish_outputs(folder, args.out, settings)
            except storage.StorageError as exc:
                raise UsageError(str(exc)) from None
    return report_summary(outputs.tally.summary(), shown, as_json=args.json)
