"""The per-patient PDF report, read back with pypdf and rendered with pdftoppm."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import shutil
import subprocess
import uuid
from datetime import date, datetime, timedelta, timezone
from importlib import metadata as importlib_metadata

import cv2
import numpy as np
import pypdf
import pytest
from PIL import Image

from components.explanation.cam import explain
from components.explanation.overlay import colorize, resize_map
from components.report import (
    DEMO_WARNING,
    FINAL_DECISION,
    NOT_REVIEWED,
    NOT_SIGNED,
    REFER,
    REPORT_TITLE,
    ROUTINE,
    EyeFindings,
    ModelInfo,
    PatientInfo,
    ReportError,
    ReviewInfo,
    build_report,
    safe_filename,
)
from components.screening.decision import decide, format_probability
from components.screening.vocabulary import NOT_FOUND, OFF_BORDER, OFF_SKIN, ON_LENS, PARTLY
from tests.support import CSDI, checked

# Real fundus photographs, CSDI, CC BY 4.0: Xie et al., "CSDI: A Fine-Grained Fundus Image Dataset
# of Cataract Severity and Diagnostic Images", 2025 (attribution in the folder's README.md).


NAME = '<b>Zoë</b> & "Łukasz" 王小明'
REPORT_ID = "123e4567-e89b-12d3-a456-426614174000"
CET = timezone(timedelta(hours=1))
GENERATED = datetime(2025, 3, 14, 9, 30, tzinfo=CET)
SIGNED = datetime(2025, 3, 2, 10, 5, tzinfo=CET)
SHA = "0123456789abcdef" * 4
CARD = {
    "name": "cataract-b0-demo",
    "version": "1.2.0",
    "demo": True,
    "architecture": "EfficientNet-B0 with an MLP head",
    "input_size": 224,
    "intended_use": "Demonstrating the dashboard on synthetic eyes",
    "training_data": {"source": "synthetic eyes", "n_images": 4000},
    "metrics": {
        "auc": {"value": 0.93, "ci95": [0.9, 0.96]},
        "sensitivity": {"value": 0.884, "ci95": [0.82, 0.92]},
    },
}


def pages_text(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def flat(text: str) -> str:
    """Whitespace collapsed, so that a phrase wrapped over two lines still matches."""
    return " ".join(text.split())


def probabilities(expl, p_cataract: float):
    """The same explanation with chosen class probabilities (the map and method stay real)."""
    pred = "Cataract" if p_cataract >= 0.5 else "Normal"
    return dataclasses.replace(
        expl,
        probabilities={"Cataract": p_cataract, "Normal": 1 - p_cataract},
        prediction=pred,
        confidence=max(p_cataract, 1 - p_cataract),
    )


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [
        np.asarray(Image.open(CSDI / name).convert("RGB")) for name in ("DLY-OD.jpg", "HAY1.jpg")
    ]


@pytest.fixture(scope="module")
def explanations(classifier, photos):
    return explain(classifier, photos)


@pytest.fixture(scope="module")
def small():
    """A small real photograph (half of one CSDI image, downscaled) for quick reports."""
    img = np.asarray(Image.open(CSDI / "HJX1.jpg").convert("RGB").reduce(8))
    return np.ascontiguousarray(img)


@pytest.fixture(scope="module")
def small_expl(classifier, small):
    return explain(classifier, [small])[0]


@pytest.fixture(scope="module")
def demo_model() -> ModelInfo:
    return ModelInfo(
        name="cataract-b0-demo",
        version="1.2.0",
        weights_sha256=SHA,
        threshold=0.5,
        is_demo=True,
        card=CARD,
    )


@pytest.fixture(scope="module")
def plain_model() -> ModelInfo:
    return ModelInfo(
        name="clinic-b0",
        version="unversioned",
        weights_sha256=SHA,
        threshold=0.5,
        is_demo=False,
        card={},
    )


@pytest.fixture(scope="module")
def full_eyes(photos, explanations):
    od = EyeFindings(
        "OD",
        photos[0],
        probabilities(explanations[0], 0.87),
        exam_date=date(2025, 3, 1),
        modality="fundus",
        colormap="turbo",
        alpha=0.4,
        review=ReviewInfo(
            "Dr. A. Müller",
            True,
            "Nuclear cataract",
            "NO3",
            notes="Dense nuclear opacity.\nRefer within 6 weeks.",
            signed_at=SIGNED,
            version=2,
        ),
    )
    os_ = EyeFindings(
        "OS",
        photos[1],
        probabilities(explanations[1], 0.12),
        exam_date=date(2025, 3, 2),
        modality="slit_lamp",
        attention=checked(ON_LENS, "external", lens_fraction=0.72, border_fraction=0.05),
    )
    return [os_, od]  # deliberately left eye first: the report must still put OD first


@pytest.fixture(scope="module")
def full_pdf(full_eyes, demo_model) -> bytes:
    patient = PatientInfo("P-0042", NAME, date(1950, 6, 15), "F")
    return build_report(
        patient,
        full_eyes,
        demo_model,
        reviewer="Dr. A. Müller",
        report_id=REPORT_ID,
        generated_at=GENERATED,
    )


def one_eye_pdf(image, expl, model, patient=None, **eye_kw) -> bytes:
    review = eye_kw.pop("review", None)
    eye = EyeFindings("OD", image, expl, review=review, **eye_kw)
    return build_report(
        patient or PatientInfo("P-7"), [eye], model, report_id=REPORT_ID, generated_at=GENERATED
    )


def test_every_field_is_in_the_text(full_pdf, full_eyes):
    text = flat(" ".join(pages_text(full_pdf)))
    expected = [
        # header
        REPORT_TITLE,
        f"Report ID: {REPORT_ID}",
        "Generated: 2025-03-14 09:30 UTC+01:00",
        # patient: age on 2025-03-14 of someone born 1950-06-15 is 74 (birthday still to come)
        "Patient ID P-0042",
        "Birth date 1950-06-15 (age 74)",
        "Sex Female",
        "Reviewing clinician Dr. A. Müller",
        # per eye
        "Exam date 2025-03-01",
        "Exam date 2025-03-02",
        "Fundus photograph",
        "Slit-lamp photograph",
        "Image quality Gradable",
        "Probability of cataract 0.870 (87.0%)",
        "Probability of cataract 0.120 (12.0%)",
        "Predicted class Cataract (probability 0.870)",
        "Operating threshold 0.50",
        "Indeterminate band threshold ± 0.10 (0.40 to 0.60)",
        "Result: At or above threshold: cataract suspected",
        "Result: Below threshold: no cataract detected",
        "Original",
        "Grad-CAM Heatmap",
        "Overlay",
        "Method: Grad-CAM",
        "Layer: features.8",
        *(f"Target class: {eye.explanation.target}" for eye in full_eyes),
        "Colormap: turbo",
        "Colormap: jet",
        "Transparency α: 0.40",
        "Transparency α: 0.50",
        # the attention check: its verdict in words, then its figures
        "Attention check",
        "Verdict: on lens",
        "Lens fraction 0.720",
        "Border fraction 0.050",
        # review
        "Agreement Agrees with the model",
        "Finding Nuclear cataract",
        "Grade NO3",
        "Signed by Dr. A. Müller, 2025-03-02 10:05 UTC+01:00",
        "Meaning of the signature Reviewed and approved",
        "Review version 2",
        "Dense nuclear opacity.",
        "Refer within 6 weeks.",
        NOT_REVIEWED,
        # summary
        REFER,
        FINAL_DECISION,
        "Because: Right eye (OD): probability of cataract 0.870 at or above the threshold 0.50.",
        # model
        "Name cataract-b0-demo",
        "Version 1.2.0",
        f"Weights SHA-256 {SHA}",
        "Architecture EfficientNet-B0 with an MLP head",
        "Input size 224 px",
        "Source: synthetic eyes",
        "N images: 4000",
        "Intended use Demonstrating the dashboard on synthetic eyes",
        "AUC 0.930 0.900 to 0.960",
        "Sensitivity 0.884 0.820 to 0.920",
        DEMO_WARNING,
        # limitations
        "Decision support, not a diagnosis.",
        "A heatmap is not a lesion outline.",
        "not a cleared or approved medical device",
    ]
    missing = [phrase for phrase in expected if phrase not in text]
    assert missing == []
    assert ROUTINE not in text
    assert "Faithfulness" not in text  # absent from the inputs, so not invented
    assert "None" not in text


def test_markup_and_cjk_name_come_back_exactly(full_pdf):
    reader = pypdf.PdfReader(io.BytesIO(full_pdf))
    lines = reader.pages[0].extract_text().splitlines()
    assert lines[lines.index("Name") + 1] == NAME  # the whole line, nothing added or lost
    # Latin runs in the embedded DejaVu subset, the Chinese run in the CID font.
    fonts = {
        str(f.get_object()["/BaseFont"]).split("+")[-1]
        for f in reader.pages[0]["/Resources"]["/Font"].values()
    }
    assert {"STSong-Light", "DejaVuSans", "DejaVuSans-Bold"} <= {f.lstrip("/") for f in fonts}


def test_user_text_never_styles_the_page(small, small_expl, plain_model):
    notes = "<br/><b>not bold</b> & <font size=40>big</font> ]]> &amp;"
    review = ReviewInfo("<i>Dr X</i>", False, "<u>Cortical</u>", "C2 & up", notes=notes)
    pdf = one_eye_pdf(small, small_expl, plain_model, review=review, modality="<script>")
    text = pages_text(pdf)[0]
    for literal in (notes, "<i>Dr X</i> (not signed)", "<u>Cortical</u>", "C2 & up", "<script>"):
        assert literal in text
    assert "Agreement Disagrees with the model" in flat(text)
    assert NOT_SIGNED in text
    assert NOT_REVIEWED not in text


def test_other_cjk_scripts_pick_their_cid_font(small, small_expl, plain_model):
    for name, font in (("山田 はなこ", "/HeiseiMin-W3"), ("김민수", "/HYSMyeongJo-Medium")):
        patient = PatientInfo("P-1", name)
        pdf = build_report(
            patient,
            [EyeFindings("OD", small, small_expl)],
            plain_model,
            report_id=REPORT_ID,
            generated_at=GENERATED,
        )
        page = pypdf.PdfReader(io.BytesIO(pdf)).pages[0]
        assert name in page.extract_text()
        assert font in {
            str(f.get_object()["/BaseFont"]) for f in page["/Resources"]["/Font"].values()
        }


def test_checks_are_printed_as_given_when_present(small, small_expl, plain_model):
    attention = checked(OFF_SKIN, lens_fraction=0.125, flagged=True, note=None)
    faithfulness = {"deletion_auc": 0.21, "insertion_auc": 0.64}
    pdf = one_eye_pdf(
        small, small_expl, plain_model, attention=attention, faithfulness=faithfulness
    )
    text = flat(pages_text(pdf)[0])
    for phrase in (
        "Attention check Verdict: off lens: lids or skin",
        "Lens fraction 0.125",
        "Flagged yes",
        "Faithfulness",
        "Deletion AUC 0.210",
        "Insertion AUC 0.640",
    ):
        assert phrase in text, phrase
    assert "Note" not in text
    assert "None" not in text


def test_page_x_of_n_on_every_page(full_pdf):
    texts = pages_text(full_pdf)
    assert len(texts) >= 2
    for number, text in enumerate(texts, start=1):
        assert f"Page {number} of {len(texts)}" in text
        assert REPORT_TITLE in text
        assert REPORT_ID in text


def test_eyes_in_order_right_first(full_pdf):
    text = flat(" ".join(pages_text(full_pdf)))
    od, os_ = text.index("Right eye (OD)"), text.index("Left eye (OS)")
    assert od < os_
    assert text.index("Exam date 2025-03-01") < text.index("Exam date 2025-03-02")
    summary = text[text.index("Summary and recommendation") :]
    assert summary.index("Right eye (OD) Gradable 0.870") < summary.index(
        "Left eye (OS) Gradable 0.120"
    )


def test_three_panels_per_eye_at_print_resolution(full_pdf, full_eyes, photos):
    reader = pypdf.PdfReader(io.BytesIO(full_pdf))
    texts = [flat(p.extract_text()) for p in reader.pages]
    eyes = {e.eye: e for e in full_eyes}
    for heading, eye, photo in (
        ("Right eye (OD)", eyes["OD"], photos[0]),
        ("Left eye (OS)", eyes["OS"], photos[1]),
    ):
        page = reader.pages[next(i for i, t in enumerate(texts) if heading in t)]
        panels = [
            np.asarray(im.image.convert("RGB")) for im in page.images if im.image.size != (4, 256)
        ]
        assert len(panels) >= 3
        h, w = panels[0].shape[:2]
        assert all(p.shape == (h, w, 3) for p in panels[:3])
        # About 150 mm across for three panels: ~430 px each at 200 dpi, the photograph's 3:2 kept.
        assert 380 <= w <= 480
        assert abs(w / h - photo.shape[1] / photo.shape[0]) < 0.01
        reference = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
        original = min(panels, key=lambda p: np.abs(p.astype(int) - reference).mean())
        assert np.abs(original.astype(int) - reference).mean() < 3.0
        heat = colorize(resize_map(eye.explanation.cam, (w, h)), eye.colormap)
        assert any(np.array_equal(p, heat) for p in panels)
        # The overlay is exactly (1 - alpha) * original + alpha * heatmap, rounded.
        expected = np.rint(
            (1 - eye.alpha) * original.astype(float) + eye.alpha * heat.astype(float)
        )
        assert min(np.abs(p.astype(int) - expected).max() for p in panels) <= 1


def test_metadata_names_the_report_not_the_patient(full_pdf):
    meta = pypdf.PdfReader(io.BytesIO(full_pdf)).metadata
    version = importlib_metadata.version("cataract-cam")
    assert meta.title == REPORT_TITLE
    assert meta.creator == "cataract-cam"
    assert meta.subject
    assert "Cataract" in meta.subject
    assert (
        f"cataract-cam {version}" in meta.producer
    )
    assert (
        f"cataract-cam {version}" in (meta["/Keywords"])
    )
    assert meta["/CreationDate"] == "D:20250314083000+00'00'"  # 09:30 at UTC+01:00
    values = " ".join(str(v) for v in meta.values())
    for secret in ("P-0042", "Zoë", "Łukasz", "王小明", "Müller"):
        assert secret not in values


def test_fixed_id_and_time_give_identical_bytes(full_eyes, demo_model, full_pdf):
    patient = PatientInfo("P-0042", NAME, date(1950, 6, 15), "F")
    again = build_report(
        patient,
        full_eyes,
        demo_model,
        reviewer="Dr. A. Müller",
        report_id=uuid.UUID(REPORT_ID),
        generated_at=GENERATED,
    )
    assert again == full_pdf
    other = build_report(
        patient,
        full_eyes,
        demo_model,
        reviewer="Dr. A. Müller",
        report_id=uuid.UUID(int=1),
        generated_at=GENERATED,
    )
    assert other != full_pdf


def test_size_stays_under_three_megabytes(full_pdf):
    assert len(full_pdf) < 3_000_000


def test_streams_are_compressed_without_ascii85(small, small_expl, plain_model):
    pdf = one_eye_pdf(small, small_expl, plain_model)
    assert b"/FlateDecode" in pdf
    assert b"/ASCII85Decode" not in pdf


def test_long_notes_flow_onto_further_pages(small, small_expl, plain_model):
    words = [f"w{i:04d}" for i in range(900)]
    notes = " ".join(words[:450]) + "\n\n" + " ".join(words[450:])
    assert len(notes) >= 5000
    review = ReviewInfo("Dr. B", True, "Normal lens", None, notes=notes, signed_at=SIGNED)
    pdf = one_eye_pdf(small, small_expl, plain_model, review=review)
    texts = pages_text(pdf)
    found = [re.findall(r"w\d{4}", t) for t in texts]
    assert [w for page in found for w in page] == words  # every word, once, in order
    assert found[0]
    assert found[1]


def test_ungradable_eye_is_reported_and_referred(photos, explanations, plain_model):
    od = EyeFindings("OD", photos[0], probabilities(explanations[0], 0.1))
    os_ = EyeFindings("OS", None, None, gradable=False, ungradable_reason="Dense corneal scar")
    pdf = build_report(
        PatientInfo("P-9"), [od, os_], plain_model, report_id=REPORT_ID, generated_at=GENERATED
    )
    text = flat(" ".join(pages_text(pdf)))
    assert "Image quality Ungradable: Dense corneal scar" in text
    assert "Image could not be read" in text
    assert "Left eye (OS) Ungradable – Ungradable image" in text
    assert REFER in text
    assert ROUTINE not in text
    assert "Because: Left eye (OS): image ungradable." in text


def test_both_eyes_clear_give_routine_follow_up(small, small_expl, plain_model):
    eyes = [
        EyeFindings("OD", small, probabilities(small_expl, 0.05)),
        EyeFindings("OS", small, probabilities(small_expl, 0.21)),
    ]
    text = flat(
        " ".join(
            pages_text(
                build_report(
                    PatientInfo("P-3"),
                    eyes,
                    plain_model,
                    report_id=REPORT_ID,
                    generated_at=GENERATED,
                )
            )
        )
    )
    assert ROUTINE in text
    assert REFER not in text
    assert FINAL_DECISION in text
    assert "INDETERMINATE" not in text
    assert DEMO_WARNING not in text


@pytest.mark.parametrize(
    ("p", "refer", "indeterminate"),
    [
        (0.41, False, True),  # |0.41 - 0.5| = 0.09 < 0.10
        (0.59, True, True),
        (0.39, False, False),  # 0.11 away
        (0.61, True, False),
    ],
)
def test_indeterminate_band_around_threshold(
    small, small_expl, plain_model, p, refer, indeterminate
):
    text = flat(" ".join(pages_text(one_eye_pdf(small, probabilities(small_expl, p), plain_model))))
    assert (REFER in text) is refer
    assert (ROUTINE in text) is not refer
    assert ("INDETERMINATE" in text) is indeterminate
    assert ("(indeterminate)" in text) is indeterminate  # the summary row says it too


def test_operating_threshold_comes_from_the_model(small, small_expl, plain_model):
    # p = 0.35: the predicted class is Normal, but the operating point 0.30 makes it positive.
    model = dataclasses.replace(plain_model, threshold=0.3)
    text = flat(" ".join(pages_text(one_eye_pdf(small, probabilities(small_expl, 0.35), model))))
    assert "Operating threshold 0.30" in text
    assert "Predicted class Normal" in text
    assert REFER in text
    assert "0.350 at or above the threshold 0.30" in text
    assert "threshold ± 0.10 (0.20 to 0.40)" in text


def test_optional_fields_left_out_and_age_on_the_day(small, small_expl, plain_model):
    pdf = build_report(
        PatientInfo("P-5"),
        [EyeFindings("OD", small, small_expl)],
        plain_model,
        report_id=REPORT_ID,
        generated_at=GENERATED,
    )
    text = flat(" ".join(pages_text(pdf)))
    patient = text[text.index("1. Patient") : text.index("2. Right eye (OD)")]
    assert patient == "1. Patient Patient ID P-5 "
    for absent in (
        "None",
        "Exam date",
        "Modality",
        "Architecture",
        "Training data",
        "Intended use",
        "Performance",
        DEMO_WARNING,
    ):
        assert absent not in text, absent
    assert "Version unversioned" in text
    # Born 2000-03-15: still 24 on 2025-03-14; born 2000-03-14: 25 that day.
    for born, age in ((date(2000, 3, 15), 24), (date(2000, 3, 14), 25)):
        pdf = build_report(
            PatientInfo("P-6", birth_date=born),
            [EyeFindings("OD", small, small_expl)],
            plain_model,
            report_id=REPORT_ID,
            generated_at=GENERATED,
        )
        assert f"Birth date {born.isoformat()} (age {age})" in flat(pages_text(pdf)[0])


def test_page1_renders_with_text_and_pictures(full_pdf, tmp_path):
    assert shutil.which("pdftoppm"), "pdftoppm (poppler-utils) is needed to render the report"
    src = tmp_path / "report.pdf"
    src.write_bytes(full_pdf)
    subprocess.run(
        ["pdftoppm", "-r", "40", "-f", "1", "-l", "1", "-png", str(src), str(tmp_path / "p")],
        check=True,
        timeout=60,
    )
    page = np.asarray(Image.open(next(tmp_path.glob("p*.png"))).convert("RGB")).astype(int)
    assert page.shape[:2] == (468, 331)  # A4 at 40 dpi
    ink = (page < 235).any(axis=2).mean()
    dark = (page.max(axis=2) < 90).mean()
    colourful = ((page.max(axis=2) - page.min(axis=2)) > 80).mean()
    assert ink > 0.08
    assert dark > 0.01
    assert colourful > 0.03


def test_model_info_from_classifier(classifier):
    from models import Classifier

    info = ModelInfo.from_classifier(classifier)
    assert (info.version, info.is_demo, info.threshold, info.card) == (
        "unversioned",
        False,
        0.5,
        {},
    )
    clf = Classifier(
        model=classifier.model,
        class_names=classifier.class_names,
        weights_sha256=SHA,
        card={"name": "b0-demo", "version": "2.1", "demo": True},
        threshold=0.35,
    )
    info = ModelInfo.from_classifier(clf)
    assert (info.name, info.version, info.weights_sha256, info.threshold, info.is_demo) == (
        "b0-demo",
        "2.1",
        SHA,
        0.35,
        True,
    )


def test_bad_inputs_are_refused_without_patient_data(small, small_expl, plain_model):
    patient = PatientInfo("P-secret", "Jane Roe")
    cases = [
        ([EyeFindings("XX", small, small_expl)], {}),
        ([], {}),
        (
            [
                EyeFindings(
                    "OD", small, dataclasses.replace(small_expl, probabilities={"A": 0.3, "B": 0.7})
                )
            ],
            {},
        ),
        ([EyeFindings("OD", small, small_expl, alpha=1.5)], {}),
        ([EyeFindings("OD", small, small_expl, colormap="rainbow")], {}),
        ([EyeFindings("OD", small[..., 0], small_expl)], {}),
        ([EyeFindings("OD", small, small_expl)], {"report_id": "not-a-uuid"}),
        ([EyeFindings("OD", small, small_expl)], {"indeterminate_band": 0.7}),
    ]
    for eyes, kw in cases:
        with pytest.raises(ReportError) as err:
            build_report(patient, eyes, plain_model, **kw)
        assert "secret" not in str(err.value)
        assert "Roe" not in str(err.value)
    with pytest.raises(ReportError):
        build_report(PatientInfo("  "), [EyeFindings("OD", small, small_expl)], plain_model)


def test_safe_filename():
    assert safe_filename("P-0042") == "cataract_report_P-0042.pdf"
    assert safe_filename("P_0042", ".png") == "cataract_report_P_0042.png"
    digest = hashlib.sha256("王小明".encode()).hexdigest()
    assert safe_filename("王小明") == f"cataract_report_{digest[:16]}.pdf"
    traversal = safe_filename("../../etc/passwd")
    stem = traversal.removeprefix("cataract_report_").removesuffix(".pdf")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", stem)
    assert ".." not in traversal
    assert "/" not in traversal
    assert stem == "etc_passwd-" + hashlib.sha256(b"../../etc/passwd").hexdigest()[:8]
    assert safe_filename("a/b") != safe_filename("a_b") != safe_filename("a\\b")
    assert safe_filename("Zoë").startswith("cataract_report_Zoe-")
    assert len(safe_filename("x" * 500).removeprefix("cataract_report_").removesuffix(".pdf")) <= 64
    controls = "\x00\x01"
    assert (
        safe_filename(controls)
        == f"cataract_report_{hashlib.sha256(controls.encode()).hexdigest()[:16]}.pdf"
    )
    with pytest.raises(ValueError, match="suffix must be empty or a dot followed by 1 to 10 letters or digits"):
        safe_filename("P-1", "/../x")
    with pytest.raises(TypeError):
        safe_filename(42)  # type: ignore[arg-type]


def test_attention_off_the_lens_refers_and_says_why(small, small_expl, plain_model):
    # p = 0.20 alone would be routine; the map lying on the lids makes the result doubtful.
    attention = checked(OFF_SKIN, energy_in_lens=0.12)
    pdf = one_eye_pdf(small, probabilities(small_expl, 0.2), plain_model, attention=attention, modality="external")
    text = flat(" ".join(pages_text(pdf)))
    assert f"Attention check Verdict: {OFF_SKIN}" in text
    assert "Right eye (OD) Gradable 0.200 No cataract detected" in text
    assert REFER in text
    assert ROUTINE not in text
    assert "Because: Right eye (OD): the model's attention lies off the lens." in text


@pytest.mark.parametrize(
    ("attention", "modality"),
    [
        # As the review screen passes it: the check's result on a fundus photograph, the record's modality.
        (checked(OFF_BORDER, "fundus"), "fundus"),
        # The check's own modality tells it when the record does not.
        (checked(OFF_BORDER, "fundus"), None),
        (checked(OFF_SKIN, "fundus"), "fundus"),
    ],
)
def test_attention_off_the_fundus_field_says_so(small, small_expl, plain_model, attention, modality):
    pdf = one_eye_pdf(small, probabilities(small_expl, 0.2), plain_model, attention=attention, modality=modality)
    text = flat(" ".join(pages_text(pdf)))
    assert "Because: Right eye (OD): the model's attention lies off the fundus field." in text
    assert REFER in text


@pytest.mark.parametrize(("verdict", "modality", "words"), [
    (ON_LENS, "external", "on lens"), (PARTLY, "external", "partly on lens"),
    (ON_LENS, "fundus", "inside the fundus"), (NOT_FOUND, "external", "lens not found")])
def test_attention_on_the_lens_or_not_found_leaves_routine(small, small_expl, plain_model, verdict, modality, words):
    pdf = one_eye_pdf(small, probabilities(small_expl, 0.2), plain_model, attention=checked(verdict, modality))
    text = flat(" ".join(pages_text(pdf)))
    assert f"Verdict: {words}" in text
    assert ROUTINE in text
    assert REFER not in text
    assert "Because:" not in text


def test_positive_eye_and_off_lens_eye_give_every_reason(small, small_expl, plain_model):
    eyes = [
        EyeFindings("OS", small, probabilities(small_expl, 0.1), attention=checked(OFF_BORDER)),
        EyeFindings("OD", small, probabilities(small_expl, 0.8)),
    ]
    pdf = build_report(PatientInfo("P-8"), eyes, plain_model, report_id=REPORT_ID, generated_at=GENERATED)
    text = flat(" ".join(pages_text(pdf)))
    assert (
        "Because: Right eye (OD): probability of cataract 0.800 at or above the threshold 0.50; "
        "Left eye (OS): the model's attention lies off the lens."
    ) in text


@pytest.mark.parametrize(
    ("p", "band", "threshold", "label", "because"),
    [
        (0.87, 0.1, 0.5, "Cataract suspected",
         "Right eye (OD): probability of cataract 0.870 at or above the threshold 0.50"),
        (0.45, 0.1, 0.5, "No cataract detected (indeterminate)", None),  # 0.05 from the threshold
        (0.12, 0.2, 0.3, "No cataract detected (indeterminate)", None),  # 0.18 from the threshold
        (0.5, 0.0, 0.5, "Cataract suspected",
         "Right eye (OD): probability of cataract 0.500 at or above the threshold 0.50"),
    ],
)
def test_summary_says_what_screening_decides(small, small_expl, plain_model, p, band, threshold, label, because):
    model = dataclasses.replace(plain_model, threshold=threshold)
    eye = EyeFindings("OD", small, probabilities(small_expl, p))
    pdf = build_report(
        PatientInfo("P-4"), [eye], model, report_id=REPORT_ID, generated_at=GENERATED, indeterminate_band=band
    )
    summary = flat(" ".join(pages_text(pdf)))
    summary = summary[summary.index("Summary and recommendation") :]
    d = decide(p, threshold, band=band, eye="OD")
    assert d.label == label
    assert d.reasons == ((because,) if because else ())
    assert f"Right eye (OD) Gradable {format_probability(p)} {label}" in summary
    assert f"Suggested next step {REFER if because else ROUTINE}" in summary
    if because:
        assert f"Because: {because}." in summary
    else:
        assert "Because:" not in summary


def test_sex_in_words_whatever_the_case(small, small_expl, plain_model):
    for sex, shown in (("f", "Female"), ("M", "Male"), (" x ", "Other or not stated"), ("intersex", "intersex")):
        pdf = one_eye_pdf(small, small_expl, plain_model, patient=PatientInfo("P-2", sex=sex))
        assert f"Sex {shown}" in flat(pages_text(pdf)[0])


def test_probability_outside_the_unit_interval_is_refused(small, small_expl, plain_model):
    expl = dataclasses.replace(small_expl, probabilities={"Cataract": float("nan"), "Normal": 0.5})
    with pytest.raises(ReportError, match=r"^The probability must lie in \[0, 1\], got nan\.$"):
        one_eye_pdf(small, expl, plain_model)


def test_words_and_decisions_are_the_shared_ones():
    import components.report as report
    from components.screening import decision as screening
    from components.screening import vocabulary

    assert report.REFER is screening.REFER
    assert report.ROUTINE is screening.ROUTINE
    assert report.FINAL_DECISION is screening.FINAL_DECISION
    assert report.DEMO_WARNING is vocabulary.DEMO_WARNING
    assert not hasattr(report, "EYES")  # the labels live in the vocabulary only


def test_the_region_the_check_used_is_outlined_in_the_attention_section(classifier, plain_model):
    from components.explanation.outline import PUPIL_COLOUR
    from components.lens import finder as lens
    from components.report.panels import RegionOutline
    from models.synthetic import render_eye

    eye = render_eye(1002)  # 512 x 384, with the true pupil in its metadata
    image = eye.image
    expl = explain(classifier, [image])[0]
    # Found on a half-size display copy, as the dashboard's check runs: the report scales it back.
    region = lens.find_lens(cv2.resize(image, (256, 192), interpolation=cv2.INTER_AREA), "external").as_dict()
    assert region["found"]
    assert region["size"] == [256, 192]
    pdf = one_eye_pdf(image, expl, plain_model, attention=checked(ON_LENS, region=region))
    assert "Where the check looked: the pupil (green) and iris (blue)" in flat(" ".join(pages_text(pdf)))
    # A lens not found has nothing to outline.
    missed = one_eye_pdf(image, expl, plain_model, attention=checked(ON_LENS, region={**region, "found": False}))
    assert "Where the check looked" not in flat(" ".join(pages_text(missed)))

    outline = RegionOutline(image, region)
    outline.wrap(480.0, 800.0)
    assert outline.picture is not None
    printed = np.asarray(outline.picture)
    scale = printed.shape[1] / 512
    ys, xs = np.nonzero((printed == PUPIL_COLOUR).all(axis=2))
    assert xs.size > 20
    # The green outline runs along the true pupil's edge on the printed copy.
    cx, cy = eye.meta["pupil_center"]
    distances = np.hypot(xs - cx * scale, ys - cy * scale)
    assert float(np.median(distances)) == pytest.approx(eye.meta["pupil_radius"] * scale, rel=0.15)
