"""The clinician's review of one eye: the signed version, the form to save, sign or amend, and the history."""

from __future__ import annotations

import streamlit as st

from components.base.errors import CataractCamError
from components.records import ExamRecord, RecordStore, ReviewRecord, SignInTooOld
from components.screening.notes import NOTES_MAX_CHARS
from components.screening.vocabulary import EYE_LABELS, FINDING_LABELS, FINDINGS, GRADES
from components.workflows import review as rs
from dashboard import session
from dashboard.keys import EyeScope
from dashboard.present import review_rows, sentence

_SIGN_AGAIN = "_sign_in_again_for"  # (exam ID, why) when a signature waits for a fresh sign-in


def review_table_ui(review: ReviewRecord) -> None:
    """One review version; a table shows user text (names, notes) as plain text, never as Markdown or HTML."""
    rows = review_rows(review)
    st.dataframe({"": list(rows), "Review": list(rows.values())}, hide_index=True, width="stretch")


def _save(store: RecordStore, exam: ExamRecord, draft: ReviewRecord | None, *, agrees: bool | None,
          finding: str | None, grade: str | None, notes: str, sign: bool) -> None:
    person = session.person()
    if not person.may("review"):  # the form is not drawn for them; this guards a stale one
        st.error("Only a clinician can save or sign a review.")
        return
    if not person.name:
        st.error("Enter your name in the sidebar before saving a review.")
        return
    if agrees is None or finding is None or grade is None:
        st.error("Choose whether you agree with the model, your finding and a grade.")
        return
    try:
        saved = rs.save_review(store, exam.id, reviewer=session.actor(), agrees=agrees, finding=finding, grade=grade,
                               notes=notes, draft=draft, sign=sign)
    except SignInTooOld as error:
        # The draft is saved (nothing typed is lost); the signature waits for a fresh sign-in.
        st.session_state[_SIGN_AGAIN] = (exam.id, sentence(error))
        session.flash(f"{EYE_LABELS[exam.eye]}: your review is saved as a draft, not signed yet.", "info")
        st.rerun()
    except CataractCamError as error:
        st.error(sentence(error))
        return
    session.flash(f"{EYE_LABELS[exam.eye]}: review version {saved.version} {'signed' if sign else 'saved'}.")
    st.rerun()


def review_form_ui(store: RecordStore, exam: ExamRecord, latest: ReviewRecord | None, scope: EyeScope) -> None:
    """Agreement, finding, grade and notes; saved as a draft or signed."""
    draft = latest if latest is not None and latest.status == "reviewed" else None
    base = draft or latest  # an amendment starts from the signed text
    # A new form for each version, so it starts from that version's text; the widgets inside are the form's own.
    version = f"{latest.id}-{latest.status}" if latest else "new"
    with st.form(scope.key(f"review-{version}"), border=False):
        agree_col, finding_col, grade_col = st.columns([1.1, 1.1, 1.6])
        agrees = agree_col.radio("Do you agree with the model's result?", [True, False],
                                 format_func=lambda v: "Agree" if v else "Disagree", horizontal=True,
                                 index=None if base is None else (0 if base.agrees else 1))
        finding = finding_col.radio("Your finding", FINDINGS, format_func=FINDING_LABELS.get, horizontal=True,
                                    index=None if base is None else FINDINGS.index(base.finding))
        grade = grade_col.radio("Grade", GRADES, format_func=str.capitalize, horizontal=True,
                                index=None if base is None else GRADES.index(base.grade),
                                help="None for a normal lens; mild, moderate or severe for a cataract.")
        notes = st.text_area("Notes", value=base.notes if base is not None else "", max_chars=NOTES_MAX_CHARS)
        save_col, sign_col, _ = st.columns([1, 1, 3])
        save = save_col.form_submit_button("Save review", icon=":material/save:")
        sign = sign_col.form_submit_button("Sign", type="primary", icon=":material/draw:",
                                           help="Saves and signs: the time is recorded and the review is locked.")
    if save or sign:
        _save(store, exam, draft, agrees=agrees, finding=finding, grade=grade, notes=notes, sign=bool(sign))


def review_panel_ui(store: RecordStore, exam: ExamRecord, scope: EyeScope) -> ReviewRecord | None:
    """The eye's review: signed and locked (with an amendment form), or the form; returns the latest version.

    Drawn once per eye on a patient's page: its form is keyed by ``scope``.
    """
    history = store.review_history(exam.id)
    latest = history[-1] if history else None
    st.markdown("**Clinician review**")
    may_review = session.person().may("review")
    again = st.session_state.get(_SIGN_AGAIN)
    if may_review and again is not None and again[0] == exam.id and (latest is None or latest.status != "signed"):
        st.warning(f"{again[1]} Your provider asks who you are, then this eye opens again to sign.",
                   icon=":material/lock_clock:")
        st.button("Sign in again to sign", key=scope.key("sign-in-again"), type="primary", icon=":material/login:",
                  on_click=session.sign_in_again, args=(exam.pseudo_id, exam.eye))
    if latest is not None and latest.status == "signed":
        st.success(f"Signed review, version {latest.version}. It is locked; an amendment is saved "
                   "as a new version and this one is kept.", icon=":material/verified:")
        review_table_ui(latest)
        if may_review:
            with st.expander(f"Amend this review (saves version {latest.version + 1})"):
                review_form_ui(store, exam, latest, scope)
    else:
        if latest is not None:
            st.info(f"Draft review, version {latest.version}: not signed yet.", icon=":material/edit_note:")
            if not may_review:
                review_table_ui(latest)
        if may_review:
            review_form_ui(store, exam, latest, scope)
    if not may_review:
        st.caption("Reading only: reviewing and signing need the clinician role.")
    if len(history) > 1:
        with st.expander(f"Review history ({len(history)} versions)"):
            for version in reversed(history[:-1]):
                review_table_ui(version)
    return latest
