"""The words and colours the dashboard computes without Streamlit: the attention badge and the decision line."""

from __future__ import annotations

from components.screening.decision import decide
from components.screening.vocabulary import DIFFUSE, NOT_FOUND, OFF_BORDER, OFF_SKIN, ON_LENS
from dashboard.present import attention_badge, decision_view
from tests.support import checked


def test_attention_badge_colours_words_and_warning() -> None:
    colours = {v: attention_badge(checked(v)).colour
               for v in (ON_LENS, OFF_BORDER, OFF_SKIN, NOT_FOUND, DIFFUSE)}
    assert colours == {ON_LENS: "green", OFF_BORDER: "red", OFF_SKIN: "red", NOT_FOUND: "gray", DIFFUSE: "orange"}
    badge = attention_badge(checked(OFF_BORDER, "fundus", energy_in_lens=0.25, peak_in_lens=False))
    assert badge.text == "Attention: off the fundus: black border or text"
    assert badge.figures == "Attention inside the fundus field: 25% · Strongest point inside the fundus field: no"
    assert badge.warning == ("The model's attention lies off the fundus field: the result may rest on something "
                             "other than the fundus field. Check the photograph before relying on it.")
    assert attention_badge(checked(ON_LENS)).warning is None


def test_decision_view_words_the_decision_as_the_report_does() -> None:
    view = decision_view(decide(0.55, 0.5, eye="OD"), "Cataract")
    assert view.headline == ("Model finding: :red[**Cataract suspected (indeterminate)**] · "
                             "Suggested next step: :red[**Refer to an ophthalmologist**]")
    assert view.detail == ("P(Cataract) 55.0% against the operating threshold 0.50; results between 0.40 and 0.60 "
                           "are indeterminate. Because: Right eye (OD): probability of cataract 0.550 at or above "
                           "the threshold 0.50. The final decision rests with the reviewing clinician.")
    routine = decision_view(decide(0.1, 0.5), "Cataract")
    assert routine.headline == ("Model finding: :green[**No cataract detected**] · Suggested next step: "
                                ":green[**No cataract detected by the model; routine follow-up**]")
    assert "Because" not in routine.detail


def test_a_signed_review_shows_who_signed_when_and_what_it_means() -> None:
    from datetime import UTC, datetime

    from components.records import ReviewRecord
    from dashboard.present import review_rows

    signed_at = datetime(2026, 12, 7, 9, 30, 5, tzinfo=UTC)
    base = {"id": 1, "exam_id": 1, "version": 2, "supersedes": 1, "author": "Dr Author <https://idp|a>",
            "author_issuer": "https://idp", "author_subject": "a", "agrees": True, "finding": "normal",
            "grade": "none", "notes": "", "content_hash": None, "created_at": signed_at}
    signed = ReviewRecord(**base, status="signed", signed_at=signed_at, signer="Dr Signer <https://idp|s>",
                          signer_issuer="https://idp", signer_subject="s")
    rows = review_rows(signed)
    assert rows["Signed by"] == "Dr Signer <https://idp|s>"
    assert rows["Signed on"] == signed_at.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    assert rows["Meaning of the signature"] == "Reviewed and approved"
    draft = ReviewRecord(**base, status="reviewed", signed_at=None, signer=None, signer_issuer=None,
                         signer_subject=None)
    assert not {"Signed by", "Signed on", "Meaning of the signature"} & set(review_rows(draft))
