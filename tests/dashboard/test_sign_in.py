"""Sign-in and roles under AppTest: the gate, the identity on signatures, viewers, admins, no sign-in."""

from __future__ import annotations

import io
import time

import pytest
from pypdf import PdfReader
from streamlit import config
from streamlit.testing.v1 import AppTest

from components.base import config as settings
from components.records import RecordStore
from components.screening.vocabulary import NO_SIGN_IN_NOTICE
from tests.dashboard.support import APP, TIMEOUT, pdf_of
from tests.support import CSDI, who

ISSUER = "http://idp.test"
AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "test-cookie-secret",
        "client_id": "cataract-cam", "client_secret": "test-secret",
        "server_metadata_url": f"{ISSUER}/.well-known/openid-configuration"}


def _user(sub: str, name: str, *roles: str) -> dict:
    # Signed in just now at the provider (the ID token's iat): a signature takes a fresh sign-in.
    return {"is_logged_in": True, "iss": ISSUER, "sub": sub, "name": name, "roles": list(roles),
            "iat": int(time.time()), "nonce": f"nonce-{sub}-{time.monotonic_ns()}"}


def _app(user: dict | None, *, patient: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets["auth"] = AUTH
    at.user = user if user is not None else {"is_logged_in": False}
    at.run()
    assert not at.exception, at.exception
    if patient is not None:
        at.selectbox(key="current_patient").set_value(patient).run()
        assert not at.exception, at.exception
    return at


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "text", "caption", "title", "subheader", "error", "info", "warning")
             for e in at.get(kind)]
    parts += [str(s.options) for s in at.selectbox]
    return "\n".join(str(p) for p in parts)


@pytest.fixture(autouse=True)
def _forget_maps():
    # The map caches are shared by every session: a map cached here would keep a later test's exam from
    # being explained (and logged) again.
    yield
    from dashboard import resources

    resources.map_cache().clear()
    resources.attention_cache().clear()


def _pdf_text(pdf: bytes) -> str:
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.fixture
def patient(env) -> str:
    """A patient with one photographed eye, in the app's data folder."""
    from components.imaging.loading import load_rgb

    store = RecordStore(data_dir=env)
    try:
        store.create_patient("P-0777", name="Jane Private", actor=who("test"))
        store.add_exam("P-0777", eye="OD", pixels=load_rgb(CSDI / "LZ-OD.jpg"), actor=who("test"))
    finally:
        store.close()
    return "P-0777"


def _sign(at: AppTest) -> None:
    at.radio[[r.label for r in at.radio].index("Do you agree with the model's result?")].set_value(True)
    at.radio[[r.label for r in at.radio].index("Your finding")].set_value("normal")
    at.radio[[r.label for r in at.radio].index("Grade")].set_value("none")
    next(b for b in at.button if b.label == "Sign").click().run()
    assert not at.exception, at.exception


def test_a_visitor_who_has_not_signed_in_sees_the_sign_in_page_and_no_patient(env, patient) -> None:
    at = _app(None)
    assert [t.value for t in at.title] == ["Cataract CAM"]
    assert [b.label for b in at.button] == ["Sign in"]
    assert "P-0777" not in _texts(at)
    assert "Jane" not in _texts(at)
    assert not at.selectbox
    assert not at.dataframe
    assert not at.get("image")
    assert not [t for t in at.text_input if t.key == "reviewer"]


def test_a_clinician_signs_with_the_signed_in_identity(env, clf, patient) -> None:
    at = _app(_user("dr-ada", "Dr Ada Example", "clinician"), patient=patient)
    assert "Dr Ada Example" in [t.value for t in at.sidebar.text]
    assert "Clinician" in [c.value for c in at.sidebar.caption]
    assert "Sign out" in [b.label for b in at.sidebar.button]
    assert not [t for t in at.text_input if t.key == "reviewer"]  # no typed name when signed in
    _sign(at)
    assert "Right eye (OD): review version 1 signed." in [s.value for s in at.success]
    store = RecordStore(data_dir=env)
    try:
        (exam,) = store.exams("P-0777")
        (review,) = store.review_history(exam.id)
        assert review.status == "signed"
        # The signature and the authorship are the signed-in identity, never a typed name.
        assert (review.signer, review.signer_issuer, review.signer_subject) == ("Dr Ada Example", ISSUER, "dr-ada")
        assert (review.author, review.author_issuer, review.author_subject) == ("Dr Ada Example", ISSUER, "dr-ada")
        assert review.authenticated
        events = store.audit_trail("P-0777")
        mine = [e for e in events if e.actor != "test"]
        assert [(e.action, e.object_type) for e in mine] == [("viewed", "patient"), ("explained", "analysis"),
                                                            ("reviewed", "review"), ("signed", "review")]
        assert {(e.actor, e.actor_issuer, e.actor_subject) for e in mine} == {("Dr Ada Example", ISSUER, "dr-ada")}
        assert store.verify().ok
    finally:
        store.close()
    text = " ".join(_pdf_text(pdf_of(at)).split())
    assert "Dr Ada Example" in text
    assert "unauthenticated" not in text


def test_a_viewer_reads_but_cannot_sign_create_or_switch_the_model(env, clf, patient) -> None:
    at = _app(_user("vic", "Vic Viewer", "viewer"), patient=patient)
    labels = [b.label for b in at.button]
    assert "Sign" not in labels
    assert "Save review" not in labels
    assert "Reading only: reviewing and signing need the clinician role." in [c.value for c in at.caption]
    assert not [e for e in at.get("expander") if e.label == "New patient"]
    assert not at.file_uploader  # no photograph can be added
    at.switch_page("views/model.py").run()
    assert "Loading or switching the model is for administrators." in [c.value for c in at.caption]
    assert not at.file_uploader
    store = RecordStore(data_dir=env)
    try:
        (view,) = [e for e in store.audit_trail("P-0777") if e.action == "viewed"]
        assert (view.actor, view.actor_issuer, view.actor_subject) == ("Vic Viewer", ISSUER, "vic")
    finally:
        store.close()


def test_only_an_admin_may_load_another_model(env, clf) -> None:
    at = _app(_user("root", "Ann Admin", "admin"))
    at.switch_page("views/model.py").run()
    assert [u.label for u in at.file_uploader] == ["Upload a checkpoint (.pt or .pth)"]
    clinician = _app(_user("dr-ada", "Dr Ada Example", "clinician"))
    clinician.switch_page("views/model.py").run()
    assert not clinician.file_uploader


def test_only_an_admin_sees_the_status_page(env, clf) -> None:
    """The Status page is `cataract-cam check` on screen: every part, its status, what was found."""
    from components.interop.readiness import PARTS, check_parts

    at = _app(_user("root", "Ann Admin", "admin"))
    at.switch_page("views/status.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["Part"]) == list(PARTS)
    statuses = dict(zip(table["Part"], table["Status"], strict=True))
    assert statuses["PACS"] == "not configured"
    assert statuses["database"] == "ready"
    # The app's own secrets name a provider at idp.test, which does not answer: the page says so.
    found = dict(zip(table["Part"], table["What was found"], strict=True))
    assert statuses["sign-in provider"] == "FAILED"
    assert found["sign-in provider"] == "its discovery document at idp.test could not be read."
    # The rest as the command finds it (the test model has no card with an intended use).
    expected = {p.part: p for p in check_parts() if p.part != "sign-in provider"}
    assert {k: v for k, v in found.items() if k in expected} == {k: p.detail for k, p in expected.items()}
    failed = [k for k, p in expected.items() if not p.ok] + ["sign-in provider"]
    assert [w.value for w in at.warning if w.value.startswith("Not ready")] == [
        f"Not ready: {', '.join(sorted(failed, key=PARTS.index))}."]
    clinician = _app(_user("dr-ada", "Dr Ada Example", "clinician"))
    clinician.switch_page("views/status.py").run()
    assert not clinician.dataframe
    assert "The Status page is for administrators." in [i.value for i in clinician.info]


def test_a_signed_in_person_without_a_role_sees_nothing(env, patient) -> None:
    at = _app(_user("nobody", "No Role"))
    assert any("no role" in e.value for e in at.error)
    assert [b.label for b in at.button] == ["Sign out"]
    assert "P-0777" not in _texts(at)


def test_roles_from_the_allow_list_in_the_secrets(env, clf, patient) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets["auth"] = AUTH
    at.secrets["access"] = {"roles": {"clinician": ["dr-ada"]}}
    at.user = {**_user("dr-ada", "Dr Ada Example"), "roles": []}
    at.run()
    at.selectbox(key="current_patient").set_value(patient).run()
    assert "Sign" in [b.label for b in at.button]


def test_without_sign_in_the_app_says_so_and_marks_the_pdf(env, clf, patient) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert NO_SIGN_IN_NOTICE in [w.value for w in at.sidebar.warning]
    at.text_input(key="reviewer").set_value("Dr Bea").run()
    at.selectbox(key="current_patient").set_value(patient).run()
    _sign(at)
    assert "Dr Bea (unauthenticated)" in " ".join(_pdf_text(pdf_of(at)).split())


@pytest.fixture
def all_interfaces():
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    yield
    config.set_option("server.address", before)


def test_bound_to_all_interfaces_without_sign_in_it_refuses(env, patient, all_interfaces, monkeypatch) -> None:
    monkeypatch.delenv(settings.ALLOW_NO_AUTH.name, raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    (error,) = at.error
    assert "refuses to serve patient data on 0.0.0.0 without sign-in" in error.value
    assert "P-0777" not in _texts(at)
    assert not at.button
    assert not at.text_input
    monkeypatch.setenv(settings.ALLOW_NO_AUTH.name, "1")  # behind a platform's login, deliberately
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.error
    assert "P-0777" in _texts(at)
    # Anyone past the platform's login reviews, but nobody is an admin: no checkpoint upload or switch.
    at.switch_page("views/model.py").run()
    assert not at.exception, at.exception
    assert "Loading or switching the model is for administrators." in [c.value for c in at.caption]
    assert not [u for u in at.get("file_uploader") if "checkpoint" in str(u.proto.label).lower()]
    monkeypatch.delenv(settings.ALLOW_NO_AUTH.name)
    assert not _app(None).error  # with sign-in configured it serves (the sign-in page)
