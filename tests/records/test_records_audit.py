"""The audit trail: every action in order, and details that never carry names or images."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from components.records import RecordStore, ValidationError
from tests.support import who


def test_audit_trail_records_each_action_in_order(
    store: RecordStore, make_pixels: Callable[..., np.ndarray], analysis_kwargs: Callable[..., dict[str, object]]
) -> None:
    store.create_patient("AU", name="Frank Example", actor=who("clerk"))
    pixels = make_pixels(14)
    exam = store.add_exam("AU", eye="OD", pixels=pixels, actor=who("tech"))
    store.add_analysis(exam.id, **analysis_kwargs(np.ones((224, 224), np.float32)), actor=who("dr.a"))
    review = store.save_review(exam.id, author=who("dr.a"), agrees=True, finding="normal", grade="none")
    store.sign_review(review.id, signer=who("dr.a"))
    store.update_patient("AU", actor=who("clerk"), name="Frank Other")
    store.log(
        "exported",
        actor=who("dr.a"),
        patient_pseudo_id="AU",
        object_type="report",
        details={"pages": 2, "eyes": ["OD"]},
    )
    store.create_patient("OTHER")

    trail = store.audit_trail("AU")
    assert [(e.action, e.actor, e.object_type) for e in trail] == [
        ("created", "clerk", "patient"),
        ("created", "tech", "exam"),
        ("explained", "dr.a", "analysis"),
        ("reviewed", "dr.a", "review"),
        ("signed", "dr.a", "review"),
        ("updated", "clerk", "patient"),
        ("exported", "dr.a", "report"),
    ]
    assert all(e.patient_pseudo_id == "AU" for e in trail)
    assert [e.id for e in trail] == sorted(e.id for e in trail)
    assert [e.time for e in trail] == sorted(e.time for e in trail)
    assert trail[1].object_id == str(exam.id)
    # The exam entry names no image: after an erasure nothing in the trail points at the photograph.
    # Its facts are sealed (HMACs under the patient's own key), never written out.
    assert trail[1].details["eye"] == "OD"
    assert trail[1].details["modality"] == "external"
    assert set(trail[1].details) == {"eye", "modality", "facts"}
    assert set(trail[1].details["facts"]) == {"patient_id", "eye", "exam_date", "modality", "image_sha256"}
    assert exam.image_sha256 not in json.dumps(trail[1].details)
    assert trail[5].details["fields"] == ["name"]
    assert set(trail[5].details["facts"]) == {"pseudo_id", "name", "birth_date", "sex"}
    # A review's entry holds no finding or grade: only their seals.
    assert set(trail[3].details) == {"exam_id", "version", "facts"}
    assert trail[6].details == {"pages": 2, "eyes": ["OD"]}
    assert [e.patient_pseudo_id for e in store.audit_trail()][-1] == "OTHER"

    everything = json.dumps([e.details for e in store.audit_trail()])
    assert "Frank" not in everything
    # No image or map was serialised into the trail: an entry's details are small (a map is 256 KB).
    assert max(len(json.dumps(e.details)) for e in store.audit_trail()) < 1200
    png = store.get_image(exam.image_sha256).tobytes()
    assert png[:64].hex() not in everything

    for details, message in [
        ({"png": "iVBORw0KGgo="}, "names or image data"),
        ({"Name": "Frank"}, "names or image data"),
        ({"thumbnail": pixels}, "only text, numbers"),
        ({"raw": b"\x89PNG"}, "only text, numbers"),
        ({"blob": "A" * 300}, "at most 256 characters"),
        ({"x": float("nan")}, "finite"),
    ]:
        with pytest.raises(ValidationError, match=message):
            store.log("viewed", actor=who("dr.a"), patient_pseudo_id="AU", details=details)
    with pytest.raises(ValidationError, match="audit action must be one of"):
        store.log("printed", actor=who("dr.a"))
    assert len(store.audit_trail("AU")) == len(trail)
