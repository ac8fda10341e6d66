"""Signatures bound to an identity: the anonymous amendment, the overwritten author and the lost draft fail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from components.records import Identity, PermissionDenied, RecordStore, SignInTooOld
from tests.support import who

ISSUER = "https://idp.clinic.example"
# Signed in when this module is imported: the clinic below takes sign-ins up to six hours old.
SIGNED_IN = datetime.now(UTC)
DR_REAL = Identity(ISSUER, "sub-real", "Dr Real Clinician", role="clinician", authenticated_at=SIGNED_IN)
DR_A = Identity(ISSUER, "sub-a", "Dr A", role="clinician", authenticated_at=SIGNED_IN)
DR_B = Identity(ISSUER, "sub-b", "Dr B", role="clinician", authenticated_at=SIGNED_IN)
VIEWER = Identity(ISSUER, "sub-v", "Vera Viewer", role="viewer", authenticated_at=SIGNED_IN)


@pytest.fixture
def clinic(folder: Path, db_url: str) -> RecordStore:
    """A store that requires sign-in, as a clinic deployment with [auth] runs it, taking sign-ins up to 6 hours old."""
    records = RecordStore(db_url, data_dir=folder, require_sign_in=True)
    records.sign_fresh = timedelta(hours=6)
    yield records  # type: ignore[misc]
    records.close()


def _exam(store: RecordStore, pixels: np.ndarray, *, actor: Identity = DR_REAL) -> int:
    store.create_patient("SIG", actor=actor)
    return store.add_exam("SIG", eye="OD", pixels=pixels, actor=actor).id


def test_anonymous_amendment_is_refused(clinic: RecordStore, make_pixels: Callable[..., np.ndarray]) -> None:
    exam_id = _exam(clinic, make_pixels(40))
    signed = clinic.sign_review(
        clinic.save_review(exam_id, author=DR_REAL, agrees=True, finding="normal", grade="none").id, signer=DR_REAL
    )
    # The attack: no sign-in, a typed name, an amendment signed as the real clinician.
    with pytest.raises(PermissionDenied, match="sign in to write a review"):
        clinic.save_review(exam_id, author=who("Dr Real Clinician"), agrees=False, finding="cataract", grade="severe")
    with pytest.raises(PermissionDenied, match="sign in to sign a review"):
        clinic.sign_review(signed.id, signer=who("Dr Real Clinician"))
    # A viewer, and an identity with no role at all, may neither write nor sign.
    with pytest.raises(PermissionDenied, match="only a clinician may write a review"):
        clinic.save_review(exam_id, author=VIEWER, agrees=False, finding="cataract", grade="severe")
    amended = clinic.save_review(exam_id, author=DR_A, agrees=False, finding="cataract", grade="mild")
    nobody = Identity(ISSUER, "sub-x", "Dr Real Clinician")
    with pytest.raises(PermissionDenied, match="only a clinician may sign a review"):
        clinic.sign_review(amended.id, signer=nobody)
    with pytest.raises(PermissionDenied):
        clinic.sign_review(amended.id, signer=VIEWER)
    history = clinic.review_history(exam_id)
    assert [(r.version, r.status, r.signer_subject) for r in history] == [
        (1, "signed", "sub-real"),
        (2, "reviewed", None),
    ]
    assert clinic.verify().ok


def test_signer_does_not_overwrite_the_author(clinic: RecordStore, make_pixels: Callable[..., np.ndarray]) -> None:
    exam_id = _exam(clinic, make_pixels(41))
    draft = clinic.save_review(exam_id, author=DR_A, agrees=True, finding="cataract", grade="mild", notes="haze")
    signed = clinic.sign_review(draft.id, signer=DR_B)
    assert (signed.author, signed.author_issuer, signed.author_subject) == ("Dr A", ISSUER, "sub-a")
    assert (signed.signer, signed.signer_issuer, signed.signer_subject) == ("Dr B", ISSUER, "sub-b")
    assert (signed.reviewer, signed.notes, signed.authenticated) == ("Dr B", "haze", True)
    trail = clinic.audit_trail("SIG")
    assert [(e.action, e.actor, e.actor_issuer, e.actor_subject) for e in trail[-2:]] == [
        ("reviewed", "Dr A", ISSUER, "sub-a"),
        ("signed", "Dr B", ISSUER, "sub-b"),
    ]
    assert trail[-1].details["content_hash"] == signed.content_hash


def test_two_saves_of_a_draft_keep_both(clinic: RecordStore, make_pixels: Callable[..., np.ndarray]) -> None:
    exam_id = _exam(clinic, make_pixels(42))
    first = clinic.save_review(exam_id, author=DR_A, agrees=True, finding="normal", grade="none", notes="first")
    second = clinic.save_review(exam_id, author=DR_A, agrees=True, finding="normal", grade="none", notes="second")
    assert [(r.id, r.version, r.notes) for r in clinic.review_history(exam_id)] == [
        (first.id, 1, "first"),
        (second.id, 2, "second"),
    ]
    assert second.supersedes == first.id


def test_roles_come_from_the_allow_list_and_the_claim(
    clinic: RecordStore, make_pixels: Callable[..., np.ndarray]
) -> None:
    admin = Identity(ISSUER, "sub-admin", "Ada Admin")
    unlisted = Identity(ISSUER, "sub-new", "Dr New", authenticated_at=SIGNED_IN)
    assert clinic.roles_of(admin) == frozenset()
    # The first admin is granted from the server's command line; afterwards only an admin grants.
    clinic.grant_role(admin, "admin", actor=None)
    assert clinic.roles_of(admin) == {"admin"}
    with pytest.raises(PermissionDenied, match="only an admin may grant roles"):
        clinic.grant_role(unlisted, "clinician", actor=None)
    with pytest.raises(PermissionDenied, match="only an admin may grant roles"):
        clinic.grant_role(unlisted, "clinician", actor=DR_A)
    exam_id = _exam(clinic, make_pixels(43))
    with pytest.raises(PermissionDenied):
        clinic.save_review(exam_id, author=unlisted, agrees=True, finding="normal", grade="none")
    clinic.grant_role(unlisted, "clinician", actor=admin)
    assert clinic.roles_of(unlisted) == {"clinician"}
    assert clinic.roles_of(DR_A) == {"clinician"}  # from the claim alone
    saved = clinic.save_review(exam_id, author=unlisted, agrees=True, finding="normal", grade="none")
    assert clinic.sign_review(saved.id, signer=unlisted).signer_subject == "sub-new"
    grants = [e for e in clinic.audit_trail() if e.action == "granted"]
    assert [(e.actor_subject, e.details) for e in grants] == [
        ("server command line", {"issuer": ISSUER, "subject": "sub-admin", "role": "admin"}),
        ("sub-admin", {"issuer": ISSUER, "subject": "sub-new", "role": "clinician"}),
    ]


def test_opening_a_patient_is_logged_as_a_view(clinic: RecordStore) -> None:
    clinic.create_patient("VIEW", name="Hana Example", actor=DR_A)
    record = clinic.open_patient("VIEW", viewer=VIEWER)
    assert record.name == "Hana Example"
    last = clinic.audit_trail("VIEW")[-1]
    assert (last.action, last.actor_subject, last.object_type, last.details) == ("viewed", "sub-v", "patient", {})
    with pytest.raises(PermissionDenied, match="sign in to open a patient"):
        clinic.open_patient("VIEW", viewer=who("Someone"))
    with pytest.raises(PermissionDenied):
        clinic.open_patient("VIEW", viewer=Identity(ISSUER, "sub-none", "No Role"))
    assert len(clinic.audit_trail("VIEW")) == 2


def test_without_sign_in_a_typed_name_signs_as_unauthenticated(
    store: RecordStore, make_pixels: Callable[..., np.ndarray]
) -> None:
    store.create_patient("LOCAL")
    exam_id = store.add_exam("LOCAL", eye="OS", pixels=make_pixels(44)).id
    signed = store.sign_review(
        store.save_review(exam_id, author=who("Dr Local"), agrees=True, finding="normal", grade="none").id,
        signer=who("Dr Local"),
    )
    assert (signed.signer, signed.signer_issuer, signed.authenticated) == ("Dr Local", "unauthenticated", False)
    with pytest.raises(TypeError, match="must be an Identity"):
        store.sign_review(signed.id, signer="Dr Local")  # type: ignore[arg-type]


def test_the_store_checks_the_role_of_every_writer(clinic: RecordStore, make_pixels: Callable[..., np.ndarray]) -> None:
    # Before the fix only the pages checked: a viewer renamed a patient through the store.
    exam_id = _exam(clinic, make_pixels(41))
    refused = [
        ("add a patient", lambda actor: clinic.create_patient("SIG-2", actor=actor)),
        ("change a patient", lambda actor: clinic.update_patient("SIG", actor=actor, name="Someone Else")),
        ("add a photograph", lambda actor: clinic.add_exam("SIG", eye="OS", pixels=make_pixels(42), actor=actor)),
    ]
    for what, write in refused:
        with pytest.raises(PermissionDenied, match=f"only a clinician may {what}"):
            write(VIEWER)
        with pytest.raises(PermissionDenied, match=f"sign in to {what}"):
            write(who("Dr Real Clinician"))
    assert [p.pseudo_id for p in clinic.list_patients()] == ["SIG"]
    assert clinic.get_patient("SIG").name is None
    assert [e.id for e in clinic.exams("SIG")] == [exam_id]
    assert len(list(clinic.images_dir.rglob("*.png"))) == 1  # the refused photograph left no file
    # Recording the model's analysis of what one opened takes any role, and a sign-in.
    analysis = {"model_sha256": "a" * 64, "model_name": "m", "method": "gradcam", "layer": "features.8",
                "target": "Cataract", "prediction": "Cataract", "confidence": 0.9,
                "probabilities": {"Cataract": 0.9, "Normal": 0.1}, "cam": np.zeros((8, 8), np.float32)}
    with pytest.raises(PermissionDenied, match="sign in to record an analysis"):
        clinic.add_analysis(exam_id, actor=who("Vera"), **analysis)
    with pytest.raises(PermissionDenied, match="may record an analysis"):
        clinic.add_analysis(exam_id, actor=Identity(ISSUER, "sub-n", "No Role"), **analysis)
    assert clinic.add_analysis(exam_id, actor=VIEWER, **analysis).prediction == "Cataract"
    assert clinic.update_patient("SIG", actor=DR_A, name="Ada Patient").name == "Ada Patient"
    assert clinic.verify().ok



def test_a_signature_needs_a_recent_sign_in(folder: Path, db_url: str, make_pixels: Callable[..., np.ndarray],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # 21 CFR Part 11 §11.200: by default a signature takes a sign-in at most 5 minutes old.
    monkeypatch.delenv("CATARACT_CAM_SIGN_FRESH_MINUTES", raising=False)
    store = RecordStore(db_url, data_dir=folder, require_sign_in=True)
    try:
        assert store.sign_fresh == timedelta(minutes=5)
        now = datetime.now(UTC)
        stale = Identity(ISSUER, "sub-real", "Dr Real Clinician", role="clinician",
                         authenticated_at=now - timedelta(minutes=7))
        exam_id = _exam(store, make_pixels(43), actor=stale)  # writing takes no fresh sign-in
        draft = store.save_review(exam_id, author=stale, agrees=True, finding="normal", grade="none")
        with pytest.raises(SignInTooOld, match=r"^sign in again to sign: your sign-in is 7 minutes old, and a "
                                               r"signature takes one at most 5 minutes old$"):
            store.sign_review(draft.id, signer=stale)
        unknown = Identity(ISSUER, "sub-real", "Dr Real Clinician", role="clinician")
        with pytest.raises(SignInTooOld, match="the time of your sign-in is not known"):
            store.sign_review(draft.id, signer=unknown)
        assert store.latest_review(exam_id).status == "reviewed"
        fresh = Identity(ISSUER, "sub-real", "Dr Real Clinician", role="clinician",
                         authenticated_at=now - timedelta(minutes=4))
        assert store.sign_review(draft.id, signer=fresh).status == "signed"
        assert fresh == unknown  # when one signed in is not part of who one is
    finally:
        store.close()
    monkeypatch.setenv("CATARACT_CAM_SIGN_FRESH_MINUTES", "0.5")
    short = RecordStore(db_url, data_dir=folder, require_sign_in=True)
    try:
        assert short.sign_fresh == timedelta(seconds=30)
    finally:
        short.close()
    monkeypatch.setenv("CATARACT_CAM_SIGN_FRESH_MINUTES", "forever")
    with pytest.raises(ValueError, match=r"SIGN_FRESH_MINUTES must be a number of minutes from 0\.1 to 1440"):
        RecordStore(db_url, data_dir=folder, require_sign_in=True)


def test_sessions_end_when_idle_too_long_or_signed_out_and_stay_ended(clinic: RecordStore) -> None:
    idle, longest = timedelta(minutes=15), timedelta(hours=12)
    t0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    ada = Identity(ISSUER, "sub-a", "Dr A", role="clinician", authenticated_at=t0)
    one, two, three = ("a" * 64), ("b" * 64), ("c" * 64)
    assert clinic.session_ended(one, ada, idle=idle, longest=longest, now=t0) is None
    assert clinic.session_ended(one, ada, idle=idle, longest=longest, now=t0 + timedelta(minutes=14)) is None
    assert clinic.session_ended(one, ada, idle=idle, longest=longest, now=t0 + timedelta(minutes=28)) is None
    # Sixteen minutes after the last activity: ended, and a copy of its cookie later gets the same answer.
    assert clinic.session_ended(one, ada, idle=idle, longest=longest, now=t0 + timedelta(minutes=44)) == "idle"
    assert clinic.session_ended(one, ada, idle=idle, longest=longest, now=t0 + timedelta(minutes=45)) == "idle"
    # Signed out: the same claims (a replayed cookie) never open a session again.
    assert clinic.session_ended(two, ada, idle=idle, longest=longest, now=t0) is None
    clinic.end_session(two, now=t0 + timedelta(minutes=1))
    assert clinic.session_ended(two, ada, idle=idle, longest=longest, now=t0 + timedelta(minutes=2)) == "signed out"
    # Active all day, but twelve hours after its sign-in it ends all the same.
    for minutes in range(0, 12 * 60 + 1, 10):
        reason = clinic.session_ended(three, ada, idle=idle, longest=longest, now=t0 + timedelta(minutes=minutes))
        assert reason is None, minutes
    assert clinic.session_ended(three, ada, idle=idle, longest=longest,
                                now=t0 + timedelta(hours=12, minutes=5)) == "expired"
    with pytest.raises(ValueError, match="only a signed-in identity"):
        clinic.session_ended("d" * 64, who("Dr A"), idle=idle, longest=longest)
