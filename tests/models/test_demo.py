"""The shipped demonstration model and the synthetic demo patients a fresh dashboard starts with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.workflows.demo_patients import DEMO_PATIENTS, ensure_demo_patients


@pytest.fixture
def store(tmp_path: Path):
    from components.records import RecordStore

    s = RecordStore(data_dir=tmp_path)
    yield s
    s.close()


def test_demo_patients_created_once(store) -> None:
    assert ensure_demo_patients(store) == len(DEMO_PATIENTS) >= 5
    ids = [p.pseudo_id for p in store.list_patients()]
    assert ids == sorted(p.pseudo_id for p in DEMO_PATIENTS)
    for patient in DEMO_PATIENTS:
        exams = store.exams(patient.pseudo_id)
        assert [e.eye for e in exams] == ["OD", "OS"]
        # What is stored is exactly what the generator draws: nothing lost, nothing added.
        for exam, spec in zip(exams, (patient.od, patient.os), strict=True):
            stored = store.get_image(exam.image_sha256)
            np.testing.assert_array_equal(stored, spec.render(exam.eye, patient.patient_seed))
    assert ensure_demo_patients(store) == 0  # idempotent: no duplicates on the next start
    assert len(store.list_patients()) == len(DEMO_PATIENTS)
    assert sum(len(store.exams(p.pseudo_id)) for p in DEMO_PATIENTS) == 2 * len(DEMO_PATIENTS)


def test_a_store_with_real_patients_is_left_alone(store) -> None:
    store.create_patient("P-123")
    assert ensure_demo_patients(store) == 0
    assert [p.pseudo_id for p in store.list_patients()] == ["P-123"]


def test_demo_findings_are_mixed() -> None:
    eyes = [e for p in DEMO_PATIENTS for e in (p.od, p.os)]
    assert any(e.label == "normal" for e in eyes)
    assert any(e.cataract_type == "mature" for e in eyes)
    assert any(e.label == "cataract" and e.grade <= 2 for e in eyes)
    assert any((p.od.label == "normal") != (p.os.label == "normal") for p in DEMO_PATIENTS)  # asymmetric


def test_shipped_demo_model_loads_with_its_card() -> None:
    from models import DEMO_MODEL_PATH, load_classifier

    assert DEMO_MODEL_PATH.stat().st_size <= 25 * 1024 * 1024
    clf = load_classifier(None)
    assert clf.is_demo is True
    assert clf.class_names == ("Cataract", "Normal")
    card = clf.card
    assert "not for clinical use" in card["intended_use"].lower()
    assert "synthetic" in card["intended_use"].lower()
    assert card["threshold"] == pytest.approx(clf.threshold)
    assert card["training_data"]["generator_version"]
    metrics = card["metrics"]
    for name in ("auc", "sensitivity", "specificity"):
        lo, hi = metrics[name]["ci95"]
        assert lo <= metrics[name]["value"] <= hi


def test_unsure_demo_eye_is_near_the_threshold() -> None:
    from models import load_classifier

    clf = load_classifier(None)
    unsure = next(p for p in DEMO_PATIENTS if p.pseudo_id == "DEMO-005")
    p = float(clf.predict_proba([unsure.os.render("OS", unsure.patient_seed)])[0, clf.positive_index])
    assert abs(p - clf.threshold) < 0.05
