"""The one screening decision, each rule worked out by hand, its boundaries and its refusals."""

from __future__ import annotations

import dataclasses
import math

import pytest

from components.screening.decision import (
    FINAL_DECISION,
    REFER,
    ROUTINE,
    ScreeningDecision,
    decide,
    format_probability,
    format_threshold,
    next_step,
)
from components.screening.vocabulary import DIFFUSE, NOT_FOUND, OFF_BORDER, OFF_SKIN, ON_LENS, PARTLY


def test_positive_call_refers_and_says_why():
    d = decide(0.87, 0.5, eye="OD")
    # 0.87 >= 0.5: positive; |0.87 - 0.5| = 0.37, not within the 0.1 band.
    assert (d.finding, d.label) == ("cataract_suspected", "Cataract suspected")
    assert (d.positive, d.indeterminate, d.refer, d.attention_caution) == (True, False, True, False)
    assert d.reasons == ("Right eye (OD): probability of cataract 0.870 at or above the threshold 0.50",)
    assert (d.p, d.threshold, d.band) == (0.87, 0.5, 0.1)
    assert d.next_step == REFER


def test_negative_call_is_routine_with_no_reason():
    d = decide(0.12, 0.5, eye="OS")
    assert (d.finding, d.label) == ("no_cataract_detected", "No cataract detected")
    assert (d.positive, d.indeterminate, d.refer) == (False, False, False)
    assert d.reasons == ()
    assert d.next_step == ROUTINE


def test_probability_equal_to_the_threshold_is_positive_and_indeterminate():
    d = decide(0.5, 0.5)
    assert d.positive  # the rule is p >= threshold
    assert d.indeterminate  # |0.5 - 0.5| = 0 < 0.1
    assert d.label == "Cataract suspected (indeterminate)"
    assert d.reasons == ("This eye: probability of cataract 0.500 at or above the threshold 0.50",)


@pytest.mark.parametrize(
    ("p", "positive", "indeterminate"),
    [
        # Binary-exact values, so that |p - t| == band holds exactly: 0.625 - 0.5 = 0.125.
        (0.625, True, False),  # on the band's upper edge: outside, since the band is |p - t| < band
        (0.375, False, False),  # on its lower edge
        (0.6249, True, True),
        (0.3751, False, True),
        (0.5 - 2**-20, False, True),  # just below the threshold
    ],
)
def test_band_edges(p, positive, indeterminate):
    d = decide(p, 0.5, band=0.125)
    assert (d.positive, d.indeterminate, d.refer) == (positive, indeterminate, positive)
    assert d.label.endswith("(indeterminate)") is indeterminate


def test_band_of_zero_makes_nothing_indeterminate():
    assert not decide(0.5, 0.5, band=0.0).indeterminate


def test_band_limits_are_clipped_to_the_unit_interval():
    assert decide(0.2, 0.75, band=0.25).band_limits == (0.5, 1.0)
    assert decide(0.2, 0.125, band=0.25).band_limits == (0.0, 0.375)


def test_the_threshold_is_the_models_not_one_half():
    d = decide(0.35, 0.3, eye="OD")
    assert d.positive
    assert d.reasons == ("Right eye (OD): probability of cataract 0.350 at or above the threshold 0.30",)
    assert decide(0.35, 0.4).refer is False
    assert decide(0.13, 0.125).reasons == ("This eye: probability of cataract 0.130 at or above the threshold 0.125",)


def test_ungradable_photograph_refers_whatever_the_probability():
    d = decide(0.1, 0.5, gradable=False, eye="OS")
    assert (d.finding, d.label, d.refer) == ("ungradable", "Ungradable image", True)
    assert d.reasons == ("Left eye (OS): image ungradable",)
    # The flags still describe the probability: 0.55 >= 0.5 and within 0.1 of it.
    d = decide(0.55, 0.5, gradable=False)
    assert (d.positive, d.indeterminate) == (True, True)
    assert d.reasons == ("This eye: image ungradable",)


def test_missing_model_result_refers():
    d = decide(None, 0.5, eye="OD")
    assert (d.finding, d.label, d.p) == ("no_model_result", "No model result", None)
    assert (d.positive, d.indeterminate, d.refer) == (False, False, True)
    assert d.reasons == ("Right eye (OD): no model result",)


@pytest.mark.parametrize(
    ("verdict", "modality", "where"),
    [
        (OFF_SKIN, "external", "the lens"),
        (OFF_BORDER, "slit_lamp", "the lens"),
        (OFF_BORDER, None, "the lens"),
        (OFF_BORDER, "fundus", "the fundus field"),
        (OFF_SKIN, "Fundus", "the fundus field"),
    ],
)
def test_attention_off_the_lens_refers_a_negative_call(verdict, modality, where):
    d = decide(0.2, 0.5, attention_verdict=verdict, modality=modality, eye="OD")
    assert (d.finding, d.label) == ("no_cataract_detected", "No cataract detected")
    assert (d.positive, d.attention_caution, d.refer) == (False, True, True)
    assert d.reasons == (f"Right eye (OD): the model's attention lies off {where}",)
    assert d.next_step == REFER


@pytest.mark.parametrize("verdict", [ON_LENS, PARTLY, DIFFUSE, NOT_FOUND, None, "off_lens"])
def test_other_verdicts_leave_the_decision_alone(verdict):
    d = decide(0.2, 0.5, attention_verdict=verdict, modality="external")
    assert (d.attention_caution, d.refer, d.reasons) == (False, False, ())


def test_positive_call_with_attention_off_the_lens_gives_both_reasons_in_order():
    d = decide(0.9, 0.5, attention_verdict=OFF_SKIN, eye="OS")
    assert d.reasons == (
        "Left eye (OS): probability of cataract 0.900 at or above the threshold 0.50",
        "Left eye (OS): the model's attention lies off the lens",
    )


def test_ungradable_or_missing_result_says_only_that():
    for p, gradable, reason in ((0.2, False, "image ungradable"), (None, True, "no model result")):
        d = decide(p, 0.5, gradable=gradable, attention_verdict=OFF_BORDER)
        assert d.attention_caution
        assert d.reasons == (f"This eye: {reason}",)


def test_positive_class_names_the_reason():
    d = decide(0.8, 0.5, positive_class="Opacity")
    assert d.reasons == ("This eye: probability of opacity 0.800 at or above the threshold 0.50",)


def test_patient_next_step_refers_when_any_eye_does():
    clear, positive = decide(0.1, 0.5), decide(0.9, 0.5)
    assert next_step([clear, clear]) == ROUTINE
    assert next_step([clear, positive]) == REFER
    assert next_step(d for d in [positive]) == REFER  # any iterable
    assert next_step([]) == ROUTINE
    assert FINAL_DECISION == "The final decision rests with the reviewing clinician."


def test_decision_is_frozen():
    d = decide(0.9, 0.5)
    assert isinstance(d, ScreeningDecision)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.refer = False  # type: ignore[misc]


def test_formats():
    assert format_probability(0.8704) == "0.870"
    assert format_probability(1.0) == "1.000"
    assert format_threshold(0.5) == "0.50"
    assert format_threshold(0.3) == "0.30"
    assert format_threshold(0.125) == "0.125"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"p": 1.5}, ValueError, r"The probability must lie in \[0, 1\], got 1\.5\."),
        ({"p": -0.01}, ValueError, r"The probability must lie in \[0, 1\], got -0\.01\."),
        ({"p": math.nan}, ValueError, r"The probability must lie in \[0, 1\], got nan\."),
        ({"threshold": 1.2}, ValueError, r"The threshold must lie in \[0, 1\], got 1\.2\."),
        ({"threshold": math.inf}, ValueError, r"The threshold must lie in \[0, 1\], got inf\."),
        ({"band": 0.5}, ValueError, r"The indeterminate band must lie in \[0, 0\.5\), got 0\.5\."),
        ({"band": -0.1}, ValueError, r"The indeterminate band must lie in \[0, 0\.5\), got -0\.1\."),
        ({"eye": "XX"}, ValueError, r"Unknown eye 'XX'; expected 'OD' \(right\) or 'OS' \(left\)\."),
        ({"modality": "x-ray"}, ValueError, r"Unknown modality 'x-ray'; expected one of external, slit_lamp, fundus\."),
        # Not numbers at all: a wrong type, not a wrong value.
        ({"p": "0.9"}, TypeError, r"The probability must be a number, got str '0\.9'\."),
        ({"p": True}, TypeError, r"The probability must be a number, got bool True\."),
        ({"threshold": [0.5]}, TypeError, r"The threshold must be a number, got list\."),
        ({"band": "wide"}, TypeError, r"The indeterminate band must be a number, got str 'wide'\."),
    ],
)
def test_bad_input_is_refused_with_what_was_expected(kwargs, error, message):
    args = {"p": 0.5, "threshold": 0.5, **kwargs}
    p, threshold = args.pop("p"), args.pop("threshold")
    with pytest.raises(error, match=f"^{message}$"):
        decide(p, threshold, **args)
