"""``cataract-cam records``: migrate, verify the trail, export or erase a patient, retention, roles, backup, restore."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.base.errors import CataractCamError
from components.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    Command,
    UsageError,
    add_json_option,
    add_model_option,
    load_model,
    print_json,
)

ACTIONS = ("migrate", "verify", "anchor", "export", "erase", "retention", "grant", "backup", "restore")


if TYPE_CHECKING:
    from components.records import Identity


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=ACTIONS, help="what to do with the records")
    p.add_argument("--patient", metavar="ID", help="pseudonymous patient ID (export, erase)")
    p.add_argument("--out", metavar="DIR", help="folder to write (export, backup); must not exist yet")
    p.add_argument("--from", dest="source", metavar="DIR", help="backup folder to restore")
    p.add_argument("--anchor", nargs="?", const="", default=None, metavar="FILE|s3://BUCKET/PREFIX",
                   help="verify: also against the chain's anchor outside the database (default: $CATARACT_CAM_ANCHOR)")
    p.add_argument("--years", type=int, default=None,
                   help="retention period in years (default: $CATARACT_CAM_RETENTION_YEARS, else 10)")
    p.add_argument("--issuer", help="identity to grant a role to: its sign-in issuer (grant)")
    p.add_argument("--subject", help="identity to grant a role to: its subject (grant)")
    p.add_argument("--name", help="identity to grant a role to: its display name (grant)")
    p.add_argument("--role", choices=("clinician", "viewer", "admin"), help="role to grant (grant)")
    p.add_argument("--as-issuer", help="who acts: issuer of an identity in the allow-list (erase, grant)")
    p.add_argument("--as-subject", help="who acts: subject of that identity")
    p.add_argument("--db", metavar="URL", default=None, help="database URL (default: $CATARACT_CAM_DB_URL or SQLite)")
    p.add_argument("--data", metavar="DIR", default=None, help="data folder (default: $CATARACT_CAM_DATA)")
    add_json_option(p)
    add_model_option(p, "checkpoint the exported PDF report is built with")


def _need(args: argparse.Namespace, *names: str) -> None:
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) in (None, "")]
    if missing:
        raise UsageError(f"records {args.action} needs {', '.join(missing)}.")


def _new_folder(value: str) -> Path:
    folder = Path(value)
    if folder.exists():
        raise UsageError("the output folder exists already; give a new one.")
    return folder


def _actor(args: argparse.Namespace) -> Identity | None:
    from components.records import Identity

    if not args.as_issuer and not args.as_subject:
        return None
    _need(args, "as_issuer", "as_subject")
    # Its roles come from the allow-list only: nobody vouches for a claim typed on a command line.
    return Identity(args.as_issuer, args.as_subject, args.as_subject)


def _run(store: Any, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    if args.action == "verify":
        anchor = None
        if args.anchor is not None:
            from components.records import anchor_at

            anchor = anchor_at(args.anchor) if args.anchor else store.anchor
            if anchor is None:
                raise UsageError("records verify --anchor needs a location, or $CATARACT_CAM_ANCHOR set.")
        report = store.verify(anchor)
        summary = {"ok": report.ok, "entries": report.entries, "signed_reviews": report.signed_reviews,
                   "problem": report.problem}
        return {**summary, "anchor": anchor.location} if anchor is not None else summary, report.ok
    if args.action == "anchor":
        point = store.anchor_head()
        return {"anchored_seq": point.seq, "anchored_hash": point.hash, "anchor": store.anchor.location}, True
    if args.action == "retention":
        past = store.past_retention(args.years)
        return {"past_retention": [{"patient": p, "last_activity": d.isoformat()} for p, d in past]}, True
    if args.action == "backup":
        _need(args, "out")
        return {"rows": store.backup(_new_folder(args.out))}, True
    if args.action == "restore":
        _need(args, "source")
        rows = store.restore(Path(args.source))
        report = store.verify()
        return {"rows": rows, "ok": report.ok, "problem": report.problem}, report.ok
    if args.action == "grant":
        from components.records import Identity

        _need(args, "issuer", "subject", "name", "role")
        store.grant_role(Identity(args.issuer, args.subject, args.name), args.role, actor=_actor(args))
        return {"granted": args.role}, True
    _need(args, "patient")
    if args.action == "erase":
        actor = _actor(args)
        if actor is None:
            raise UsageError("records erase needs --as-issuer and --as-subject of an admin in the allow-list.")
        return {"erased": store.erase_patient(args.patient, actor=actor)}, True
    return _export(store, args), True


def _export(store: Any, args: argparse.Namespace) -> dict[str, Any]:
    from components.workflows.patient_export import export_patient

    _need(args, "out")
    out = _new_folder(args.out)
    from components.records import Identity

    actor = _actor(args) or Identity.unauthenticated("server command line")
    document = export_patient(store, args.patient, out, load_model(args.model), actor=actor)
    return {"exams": len(document["exams"]), "reviews": len(document["reviews"]),
            "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())}


def _migrate(args: argparse.Namespace) -> int:
    """Bring the database to this program's schema, as its owner: the one command that changes the schema."""
    from sqlalchemy.exc import OperationalError

    from components.records.errors import storage_error
    from components.records.migrations import migrate, revision
    from components.records.settings import WRITE_OPTION, configured_data_dir, database_url, make_engine

    folder = Path(args.data) if args.data else configured_data_dir()
    url = database_url(args.db, folder)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).parent.is_dir():
        raise UsageError(f"The folder of the SQLite database does not exist: {Path(url[len('sqlite:///'):]).parent}.")
    try:
        engine = make_engine(url)
    except OSError as error:
        raise UsageError(str(storage_error(error))) from None
    try:
        with engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                before, after = migrate(connection)
                stamped = revision(connection)
    except OperationalError as error:
        raise UsageError(str(storage_error(error))) from None
    except CataractCamError as error:
        raise UsageError(str(error)) from None
    except Exception as error:  # the driver's kinds: no CREATE right, a lock, a broken schema
        raise UsageError(f"The records database could not be migrated ({type(error).__name__}); nothing was "
                         "changed. Run this as the database's owner.") from None
    finally:
        engine.dispose()
    summary = {"before": before, "after": after, "revision": stamped}
    if args.json:
        print_json(summary)
    elif before is None:
        print(f"Created the records schema at version {after} (revision {stamped}).", file=sys.stderr)
    elif before == after:
        print(f"The records schema is at version {after} already (revision {stamped}).", file=sys.stderr)
    else:
        print(f"Migrated the records schema from version {before} to {after} (revision {stamped}).",
              file=sys.stderr)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Open the store, do the action, print its summary; 3 when verify or restore finds the chain broken."""
    from components.records import RecordStore

    if args.action == "migrate":
        return _migrate(args)

    # Erasing and granting act as an identity from the allow-list, never as a typed name.
    strict = args.action in ("erase",) or (args.action == "grant" and (args.as_issuer or args.as_subject))
    try:
        store = RecordStore(args.db, data_dir=Path(args.data) if args.data else None, require_sign_in=bool(strict))
    except CataractCamError as error:
        raise UsageError(str(error)) from None
    try:
        summary, ok = _run(store, args)
    except (CataractCamError, ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    finally:
        store.close()
    if args.json:
        print_json(summary)
    else:
        print(" ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, list | dict)) or "done",
              file=sys.stderr)
        for item in summary.get("past_retention", []):
            print(f"{item['patient']}\t{item['last_activity']}")
    return EXIT_OK if ok else EXIT_PARTIAL


COMMAND = Command("records", "the record store: migrate (as the database's owner), verify, anchor, export, erase, "
                             "retention, grant, backup, restore",
                  add_arguments, run)
