"""Widget keys: the rule that keeps a page from drawing two widgets with one key, and every page drawn for two eyes."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components.records import RecordStore
from components.workflows.demo_patients import DEMO_PATIENTS, ensure_demo_patients
from dashboard.keys import EyeScope, widget_key
from tests.dashboard.support import APP, TIMEOUT
from tests.support import ROOT

DASHBOARD = ROOT / "dashboard"
PAGES = sorted(p.relative_to(DASHBOARD).as_posix() for p in (DASHBOARD / "views").glob("*.py"))
# Streamlit calls that register a widget, and so need a key no other widget on the page has.
WIDGETS = {"button", "download_button", "toggle", "checkbox", "radio", "selectbox", "multiselect", "slider",
           "select_slider", "text_input", "text_area", "number_input", "date_input", "time_input", "file_uploader",
           "camera_input", "color_picker", "data_editor", "form", "form_submit_button", "pills",
           "segmented_control", "feedback", "chat_input"}


def _key(call: ast.Call) -> ast.expr | None:
    if call.func.attr == "form" and call.args:  # type: ignore[attr-defined]
        return call.args[0]
    return next((k.value for k in call.keywords if k.arg == "key"), None)


def _widget_calls(tree: ast.AST) -> list[tuple[ast.Call, bool, ast.FunctionDef | None]]:
    """Every widget call with whether it sits inside a ``with ... .form(...)`` block and its enclosing function."""
    found: list[tuple[ast.Call, bool, ast.FunctionDef | None]] = []

    def visit(node: ast.AST, in_form: bool, function: ast.FunctionDef | None) -> None:
        if isinstance(node, ast.FunctionDef):
            function = node
        if isinstance(node, ast.With) and any(
                isinstance(item.context_expr, ast.Call) and isinstance(item.context_expr.func, ast.Attribute)
                and item.context_expr.func.attr == "form" for item in node.items):
            for item in node.items:
                visit(item.context_expr, in_form, function)
            for child in node.body:
                visit(child, True, function)
            return
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WIDGETS):
            found.append((node, in_form, function))
        for child in ast.iter_child_nodes(node):
            visit(child, in_form, function)

    visit(tree, False, None)
    return found


def _scoped(function: ast.FunctionDef | None) -> bool:
    """Whether the function draws once per eye: it takes an ``EyeScope``."""
    if function is None:
        return False
    return any(a.annotation is not None and "EyeScope" in ast.unparse(a.annotation)
               for a in function.args.args + function.args.kwonlyargs)


def _is_scope_key(key: ast.expr) -> bool:
    return (isinstance(key, ast.Call) and isinstance(key.func, ast.Attribute) and key.func.attr == "key"
            and isinstance(key.func.value, ast.Name) and key.func.value.id == "scope")


def test_every_widget_has_a_key_built_by_the_rule() -> None:
    problems: list[str] = []
    literals: Counter[str] = Counter()
    for path in sorted(DASHBOARD.rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        for call, in_form, function in _widget_calls(ast.parse(path.read_text(), filename=where)):
            key = _key(call)
            at = f"{where}:{call.lineno} {call.func.attr}"  # type: ignore[attr-defined]
            if key is None:
                if not in_form:  # a widget inside a form is scoped by the form's own key
                    problems.append(f"{at}: no key")
                continue
            if _scoped(function) and not _is_scope_key(key):
                problems.append(f"{at}: drawn once per eye, so its key must be scope.key(...), got {ast.unparse(key)}")
            elif isinstance(key, ast.JoinedStr | ast.BinOp):
                problems.append(f"{at}: a key built by hand ({ast.unparse(key)}); use widget_key or EyeScope.key")
            elif isinstance(key, ast.Constant):
                literals[str(key.value)] += 1
    problems += [f"the key {k!r} is written {n} times" for k, n in literals.items() if n > 1]
    assert problems == []


def test_the_rule_sees_the_bug_it_exists_for() -> None:
    # The toggle that broke every two-eye patient: a literal key in a function drawn once per eye.
    broken = ast.parse(
        "def panels_ui(image, scope: EyeScope):\n"
        "    st.toggle('Show the region the check used', key='show_region')\n"
        "    with st.form(scope.key('review')):\n"
        "        st.radio('Grade', GRADES)\n")
    calls = _widget_calls(broken)
    assert [(c.func.attr, in_form, _scoped(f)) for c, in_form, f in calls] == [  # type: ignore[attr-defined]
        ("toggle", False, True), ("form", False, True), ("radio", True, True)]
    assert not _is_scope_key(_key(calls[0][0]))
    assert _is_scope_key(_key(calls[1][0]))


def test_keys_differ_per_eye_exam_and_photograph() -> None:
    sha = "ab" * 32
    od, os_ = EyeScope(sha, exam_id=1, eye="OD"), EyeScope(sha, exam_id=2, eye="OS")
    assert od.key("show_region") == "show_region|eye=OD|exam=1"
    assert os_.key("show_region") == "show_region|eye=OS|exam=2"
    # The same photograph saved twice is two exams; unsaved, it is keyed by its digest whatever its eye.
    assert EyeScope(sha, exam_id=3, eye="OD").key("x") != od.key("x")
    assert EyeScope(sha, eye="OD").key("x") == EyeScope(sha).key("x") == f"x|photo={sha[:16]}"
    assert widget_key("exam", patient="P-1", eye="OS") == "exam|patient=P-1|eye=OS"
    with pytest.raises(ValueError, match="needs a scope"):
        widget_key("show_region")
    with pytest.raises(ValueError, match="without"):
        widget_key("a|b", eye="OD")


@pytest.fixture
def two_eye_patients(env: Path) -> list[str]:
    """Two demo patients (both eyes each) in the app's fresh data folder."""
    store = RecordStore(data_dir=env)
    try:
        ensure_demo_patients(store, DEMO_PATIENTS[:2])
    finally:
        store.close()
    return [p.pseudo_id for p in DEMO_PATIENTS[:2]]


def test_every_page_draws_for_a_two_eye_patient(two_eye_patients: list[str]) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    for pseudo_id in two_eye_patients:  # a second patient too: keys must not carry over from the first
        at.selectbox(key="current_patient").set_value(pseudo_id).run()
        assert not at.exception, at.exception
        # Both eyes drawn in full: panels, a review form each, and the report below them.
        assert [s.value for s in at.subheader][:3] == [f"Patient {pseudo_id}", "Right eye (OD)", "Left eye (OS)"]
        assert [img.captions[0] for img in at.get("image")] == ["Original", "Grad-CAM Heatmap", "Overlay"] * 2
        assert sum(b.label == "Sign" for b in at.button) == 2
        assert [t.label for t in at.toggle] == ["Show the region the check used"] * 2
        assert any(b.proto.label == "Export PDF report" for b in at.get("download_button"))
    for page in PAGES:  # the patient stays open while every other page is drawn
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])
