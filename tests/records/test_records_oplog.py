"""The operator's log: a JSON line per sign-in, sign-out, view, change, signature, export, error; no patient."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from components.base import oplog
from components.base.errors import CataractCamError
from components.records import Identity, RecordStore

NAME, PSEUDO_ID, BIRTH = "Jane Doe-Example", "PX-4711", "1950-01-02"
ISSUER = "https://idp.clinic.test"
DR = Identity(ISSUER, "dr-ada", "Dr Ada Example", role="clinician")
CLERK = Identity(ISSUER, "clerk-1", "Carl Clerk", role="clinician")


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict]]]:
    """The lines the events logger writes, parsed: every one must be a JSON object."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(oplog.JsonLines())
    logger = logging.getLogger(oplog.LOGGER_NAME)
    was = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(was)


def test_a_clinic_day_is_logged_by_who_did_what_and_never_by_patient(store: RecordStore, log_lines,
                                                                     make_pixels, tmp_path) -> None:
    session = "ab" * 32
    assert store.session_ended(session, DR, idle=timedelta(minutes=15), longest=timedelta(hours=12)) is None
    store.create_patient(PSEUDO_ID, name=NAME, birth_date=BIRTH, actor=CLERK)
    exam = store.add_exam(PSEUDO_ID, eye="OS", pixels=make_pixels(3), actor=CLERK)
    store.open_patient(PSEUDO_ID, viewer=DR)
    review = store.save_review(exam.id, author=DR, agrees=True, finding="cataract", grade="mild")
    store.sign_review(review.id, signer=DR)
    store.log("exported", actor=DR, patient_pseudo_id=PSEUDO_ID, object_type="report",
              details={"type": "pacs_send", "file": f"{NAME}.pdf"})
    store.end_session(session)
    lines = log_lines()
    events = [(line["event"], line.get("object_type"), line.get("actor_subject")) for line in lines]
    assert events == [
        ("signed_in", None, "dr-ada"),
        ("created", "patient", "clerk-1"),
        ("created", "exam", "clerk-1"),
        ("viewed", "patient", "dr-ada"),
        ("reviewed", "review", "dr-ada"),
        ("signed", "review", "dr-ada"),
        ("exported", "report", "dr-ada"),
        ("signed_out", None, "dr-ada"),
    ]
    assert all(line["actor_issuer"] == ISSUER for line in lines)
    assert all(line["level"] == "info" and line["time"].endswith("Z") for line in lines)
    ids = [line.get("object_id") for line in lines][1:6]
    assert ids[1:2] + ids[3:] == [exam.id, review.id, review.id]
    assert isinstance(ids[0], int)
    assert ids[2] == ids[0]  # the same patient row, created then viewed
    assert lines[6]["type"] == "pacs_send"
    text = "\n".join(json.dumps(line) for line in lines)
    for identifying in (NAME, "Jane", PSEUDO_ID, BIRTH, "1950", ".pdf"):
        assert identifying not in text, identifying


def test_a_change_that_rolls_back_is_not_logged(store: RecordStore, log_lines) -> None:
    store.create_patient(PSEUDO_ID, actor=CLERK)
    with pytest.raises(CataractCamError):
        store.create_patient(PSEUDO_ID, actor=CLERK)  # the same ID again: refused, nothing written
    assert [line["event"] for line in log_lines()] == ["created"]


def test_only_words_and_numbers_get_in(log_lines) -> None:
    line = oplog.event("viewed", issuer=ISSUER, subject="dr-ada", object_id=7, where="pacs.clinic:8042",
                       file="Jane Doe.jpg", reason="Jane Doe has a cataract", type="Jane Doe")
    assert line["object_id"] == 7
    assert line["where"] == "pacs.clinic:8042"
    assert line["dropped"] == ["file", "reason", "type"]
    assert "Jane" not in json.dumps(line)
    failed = oplog.error("command_failed", ValueError("/data/Jane Doe/eye.jpg is bad"), source="batch")
    assert failed == {"time": failed["time"], "level": "error", "event": "command_failed", "kind": "ValueError",
                      "source": "batch"}
    assert "Jane" not in json.dumps(log_lines())
    # A record of another logger through the same formatter: its level and logger, never its text.
    record = logging.LogRecord("pydicom", logging.WARNING, __file__, 1, "Jane Doe's file", None, None)
    assert json.loads(oplog.JsonLines().format(record)) == {"time": json.loads(oplog.JsonLines().format(
        record))["time"], "level": "warning", "event": "log", "source": "pydicom"}


def test_the_command_line_logs_its_failures_when_asked(tmp_path) -> None:
    import subprocess
    import sys

    from tests.support import ROOT

    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "CATARACT_CAM_DATA": str(tmp_path / "data"),
           "CATARACT_CAM_LOG_JSON": "1"}
    # A records database that cannot be opened: the command fails with one line, and the log says so.
    env["CATARACT_CAM_DB_URL"] = "postgresql+psycopg://nobody@127.0.0.1:9/none"
    done = subprocess.run([sys.executable, "-m", "components", "records", "export", "--patient", PSEUDO_ID,
                           "--out", str(tmp_path / "Jane Doe")], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    errors = [line for line in lines if line.startswith("cataract-cam: error:")]
    assert len(errors) == 1
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    assert logged
    assert [(line["event"], line["source"]) for line in logged] == [("command_failed", "records")]
    assert all(PSEUDO_ID not in json.dumps(line) and "Jane" not in json.dumps(line) for line in logged)
    quiet = subprocess.run(done.args, capture_output=True, text=True, env={**env, "CATARACT_CAM_LOG_JSON": ""},
                           timeout=300, check=False)
    assert [line for line in quiet.stderr.splitlines() if line.startswith("{")] == []
