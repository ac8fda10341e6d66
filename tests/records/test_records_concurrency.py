"""Two processes signing reviews of the same exams at once: two versions or a clear conflict, no lost write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from components.records import Identity, RecordStore
from tests.support import ROOT

SIGNER = """
import json, sys, time
from datetime import UTC, datetime
from pathlib import Path
from components.records import Identity, RecordStore, ReviewLocked

url, folder, who, go, exams = sys.argv[1], Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), json.loads(sys.argv[5])
me = Identity("https://idp.example", who, who, role="clinician", authenticated_at=datetime.now(UTC))
store = RecordStore(url, data_dir=folder, require_sign_in=True)
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
results = []
for exam_id in exams:
    saved = store.save_review(exam_id, author=me, agrees=True, finding="cataract", grade="mild", notes=who)
    try:
        signed = store.sign_review(saved.id, signer=me)
        results.append({"exam": exam_id, "version": signed.version, "signed": True})
    except ReviewLocked as error:
        results.append({"exam": exam_id, "version": saved.version, "signed": False, "conflict": str(error)})
store.close()
print(json.dumps(results))
"""

N_EXAMS = 6


def test_two_processes_sign_reviews_of_the_same_exams(
    db_url: str, folder: Path, tmp_path: Path, make_pixels: Callable[..., np.ndarray]
) -> None:
    store = RecordStore(db_url, data_dir=folder, require_sign_in=True)
    try:
        setup = Identity("https://idp.example", "dr-setup", "dr-setup", role="clinician")
        store.create_patient("RACE", actor=setup)
        exams = [store.add_exam("RACE", eye="OD", pixels=make_pixels(70 + k), actor=setup).id for k in range(N_EXAMS)]
        go = tmp_path / "go"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", SIGNER, db_url, str(folder), who, str(go), json.dumps(exams)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT,
            )
            for who in ("dr-one", "dr-two")
        ]
        time.sleep(1.5)  # both have opened the store and wait for the start
        go.touch()
        outputs = []
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err.decode()
            outputs.append(json.loads(out))
        for k, exam_id in enumerate(exams):
            one, two = outputs[0][k], outputs[1][k]
            history = store.review_history(exam_id)
            # Both saves are kept as versions 1 and 2 with their own authors: nothing was lost.
            assert [r.version for r in history] == [1, 2]
            assert sorted(r.author for r in history) == ["dr-one", "dr-two"]
            assert {one["version"], two["version"]} == {1, 2}
            for result, who in ((one, "dr-one"), (two, "dr-two")):
                row = history[result["version"] - 1]
                assert row.author == who
                if result["signed"]:
                    assert (row.status, row.signer_subject) == ("signed", who)
                else:
                    assert row.status == "reviewed"
                    assert result["conflict"] == "a newer version of this review exists; sign that one"
            # The later version always signs: only the earlier one can meet a conflict.
            assert history[1].status == "signed"
        report = store.verify()
        assert report.ok, report.problem
        assert report.entries == 1 + N_EXAMS + 2 * N_EXAMS + sum(r["signed"] for o in outputs for r in o)
    finally:
        store.close()
