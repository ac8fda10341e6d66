"""DICOM objects from a signed exam: a TID 1500 Comprehensive SR, Secondary Captures, an Encapsulated PDF.

The study and patient come from the photograph's DICOM when there is one, else from the record
(only what it holds); every SOP Instance UID is derived from the exam, the object and the review
version, so building the same signed review twice gives the same UIDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from components.base.text import without_controls
from components.interop.exam import EyeResult, SignedExam, derived_uid
from components.screening.decision import CATARACT, NO_CATARACT, NO_RESULT, UNGRADABLE
from components.screening.vocabulary import (
    DIFFUSE,
    NOT_FOUND,
    OFF_BORDER,
    OFF_SKIN,
    ON_LENS,
    PARTLY,
    SIGNATURE_MEANING,
)

__all__ = [
    "ENCAPSULATED_PDF",
    "SCHEME",
    "SECONDARY_CAPTURE",
    "DicomObjects",
    "build_encapsulated_pdf",
    "build_objects",
    "build_secondary_capture",
    "build_sr",
    "person_name",
    "read_sr",
]

SCHEME = "99CATCAM"
"""Private coding scheme for the concepts no standard terminology holds (a model's p, its verdicts)."""
MANUFACTURER = "cataract-cam"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"

_SR_SERIES, _SC_SERIES, _PDF_SERIES = 901, 902, 903  # high numbers keep clear of the camera's series

# Concept names in the private scheme; code values are SH (at most 16 characters).
P_CATARACT = Code("P-CATARACT", SCHEME, "Probability of cataract")
THRESHOLD = Code("THRESHOLD", SCHEME, "Operating threshold")
MODEL_FINDING = Code("MODEL-FINDING", SCHEME, "Model finding")
INDETERMINATE = Code("INDETERMINATE", SCHEME, "Within the indeterminate band")
ATTENTION = Code("ATTENTION", SCHEME, "Attention check")
AGREES = Code("CLIN-AGREES", SCHEME, "Clinician agrees with the model")
CLINICIAN_FINDING = Code("CLIN-FINDING", SCHEME, "Clinician finding")
PROCEDURE = Code("CATARACT-SCREEN", SCHEME, "Cataract screening of eye photographs")

MODEL_FINDINGS = {
    CATARACT: Code("CAT-SUSPECTED", SCHEME, "Cataract suspected"),
    NO_CATARACT: Code("NO-CAT-DETECTED", SCHEME, "No cataract detected"),
    UNGRADABLE: Code("UNGRADABLE", SCHEME, "Ungradable image"),
    NO_RESULT: Code("NO-RESULT", SCHEME, "No model result"),
}
VERDICT_CODES = {
    ON_LENS: Code("ON-LENS", SCHEME, ON_LENS),
    PARTLY: Code("PARTLY-ON-LENS", SCHEME, PARTLY),
    OFF_BORDER: Code("OFF-BORDER", SCHEME, OFF_BORDER),
    OFF_SKIN: Code("OFF-SKIN", SCHEME, OFF_SKIN),
    DIFFUSE: Code("DIFFUSE", SCHEME, DIFFUSE),
    NOT_FOUND: Code("LENS-NOT-FOUND", SCHEME, NOT_FOUND),
}
CLINICIAN_FINDINGS = {
    "cataract": Code("193570009", "SCT", "Cataract"),
    "normal": Code("17621005", "SCT", "Normal"),
}
CATARACT_FINDING = Code("193570009", "SCT", "Cataract")
LENS = Code("78076003", "SCT", "Lens")
LATERALITY = {"OD": Code("24028007", "SCT", "Right"), "OS": Code("7771000", "SCT", "Left")}
YES, NO = Code("373066001", "SCT", "Yes"), Code("373067005", "SCT", "No")
_UNITLESS = Code("1", "UCUM", "no units")

# Patient and General Study attributes copied from a DICOM source; anything else it holds stays there.
_IDENTITY_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription",
)
_PN_FORBIDDEN = str.maketrans({"^": " ", "=": " ", "\\": " "})


@dataclass(frozen=True)
class DicomObjects:
    """What one signed exam exports: the SR, one Secondary Capture per eye with panels, the PDF."""

    sr: Dataset
    captures: tuple[Dataset, ...]
    pdf: Dataset

    def all(self) -> list[Dataset]:
        """Every object, in the order they are sent (images before the SR that references them)."""
        return [*self.captures, self.pdf, self.sr]


def person_name(text: str) -> str:
    """A name as written, as a DICOM PN: all of it in the family-name component, never split.

    Raises:
        TypeError: text is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"A name must be a str, got {type(text).__name__}.")
    # Control characters never reach the header (an ESC would switch the character set).
    return " ".join(without_controls(text).translate(_PN_FORBIDDEN).split())[:64] + "^"


def signature_manifest(signer: str, signed_at: datetime) -> str:
    """One line that shows a signature: who signed (printed name), when (UTC), and what the signature means."""
    name = " ".join(without_controls(signer).split())
    return (f"Electronically signed by {name} on {signed_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC. "
            f"Meaning of the signature: {SIGNATURE_MEANING}.")


def _identity(exam: SignedExam) -> Dataset:
    """The Patient and General Study attributes every object carries."""
    ds = Dataset()
    source = exam.source
    if source is not None:
        for keyword in _IDENTITY_KEYWORDS:
            if keyword in source:
                setattr(ds, keyword, source[keyword].value)
        for keyword in ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                        "StudyID", "AccessionNumber", "ReferringPhysicianName"):
            if keyword not in ds:  # type 2: present, empty when the source does not say
                setattr(ds, keyword, "")
        return ds
    patient = exam.patient
    ds.PatientID = patient.pseudo_id
    ds.PatientName = person_name(patient.name) if patient.name else ""
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else ""
    ds.PatientSex = {"F": "F", "M": "M", "X": "O"}.get(patient.sex or "", "")
    ds.StudyInstanceUID = exam.study_instance_uid
    ds.StudyDate = exam.exam_date.strftime("%Y%m%d") if exam.exam_date else ""
    ds.StudyTime = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    return ds


def _stamp(ds: Dataset, when: datetime) -> None:
    """Dates from the signing, not the clock, so the same signed review always gives the same object."""
    ds.InstanceCreationDate = when.strftime("%Y%m%d")
    ds.InstanceCreationTime = when.strftime("%H%M%S")
    ds.ContentDate = when.strftime("%Y%m%d")
    ds.ContentTime = when.strftime("%H%M%S")
    ds.SeriesDate = when.strftime("%Y%m%d")
    ds.SeriesTime = when.strftime("%H%M%S")


def build_secondary_capture(exam: SignedExam, eye: EyeResult) -> Dataset:
    """The eye's three panels (Original, Heatmap, Overlay) as a Secondary Capture in the exam's study.

    The source photograph, when it came from DICOM, is referenced in the Source Image Sequence.

    Raises:
        TypeError: wrong argument types.
        ValueError: the eye has no panels or is not part of the exam.
    """
    if not isinstance(exam, SignedExam) or not isinstance(eye, EyeResult):
        raise TypeError("build_secondary_capture needs a SignedExam and one of its EyeResults.")
    if eye not in exam.eyes:
        raise ValueError("The eye is not part of this exam.")
    if eye.panels is None:
        raise ValueError(f"The {eye.eye} eye has no panels to capture.")
    ident = _identity(exam)
    sc = hd.sc.SCImage(
        pixel_array=eye.panels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=ident.StudyInstanceUID,
        series_instance_uid=exam.uid("sc-series", versioned=False),
        series_number=_SC_SERIES,
        sop_instance_uid=exam.uid("sc", eye.eye),
        instance_number=1 + ("OD", "OS").index(eye.eye),
        manufacturer=MANUFACTURER,
        patient_id=ident.PatientID,
        patient_name=ident.PatientName or None,
        patient_birth_date=ident.PatientBirthDate or None,
        patient_sex=ident.PatientSex or None,
        accession_number=ident.AccessionNumber or None,
        study_id=ident.StudyID or None,
        study_date=ident.StudyDate or None,
        study_time=ident.StudyTime or None,
        referring_physician_name=ident.ReferringPhysicianName or None,
        laterality={"OD": "R", "OS": "L"}[eye.eye],
        patient_orientation=("L", "F"),
        series_description="Grad-CAM evidence (Original, Heatmap, Overlay)",
    )
    _copy_identity(sc, ident)
    # Three panels side by side have no single orientation: the value stays empty (type 2).
    sc.PatientOrientation = []
    # The laterality is the image's (General Image); the series-level one is not allowed beside it.
    sc.ImageLaterality = sc.Laterality
    del sc.Laterality
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = "Grad-CAM heatmap and overlay of the model's attention, beside the photograph"
    sc.BurnedInAnnotation = "NO"  # panel titles and a colour bar only, nothing identifying
    if eye.source is not None:
        ref = Dataset()
        ref.ReferencedSOPClassUID = eye.source.SOPClassUID
        ref.ReferencedSOPInstanceUID = eye.source.SOPInstanceUID
        sc.SourceImageSequence = [ref]
    _stamp(sc, exam.signed_at)
    return sc


def _copy_identity(ds: Dataset, ident: Dataset) -> None:
    """Identity attributes exactly as the source or record holds them (type 2 kept present)."""
    for keyword in ident:
        ds[keyword.tag] = keyword


def build_encapsulated_pdf(exam: SignedExam) -> Dataset:
    """The signed PDF report as an Encapsulated PDF instance in the exam's study.

    Raises:
        TypeError: exam is not a SignedExam.
    """
    if not isinstance(exam, SignedExam):
        raise TypeError(f"exam must be a SignedExam, got {type(exam).__name__}.")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(ENCAPSULATED_PDF)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(exam.uid("pdf"))
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SOPInstanceUID = exam.uid("pdf")
    _copy_identity(ds, _identity(exam))
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = exam.uid("pdf-series", versioned=False)
    ds.SeriesNumber = _PDF_SERIES
    ds.SeriesDescription = "Cataract screening report"
    ds.Manufacturer = MANUFACTURER
    ds.ConversionType = "WSD"
    ds.InstanceNumber = exam.review_version
    _stamp(ds, exam.signed_at)
    del ds.SeriesDate, ds.SeriesTime
    ds.AcquisitionDateTime = exam.signed_at.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"  # the report prints the patient's identifiers
    ds.DocumentTitle = "Cataract screening report"
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(exam.pdf)
    ds.EncapsulatedDocument = exam.pdf + (b"\0" if len(exam.pdf) % 2 else b"")
    sources = [e.source for e in exam.ordered_eyes() if e.source is not None]
    if sources:
        ds.SourceInstanceSequence = [_reference(s) for s in sources]
    return ds


def _reference(source: Dataset) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return ref


def _eye_group(exam: SignedExam, eye: EyeResult, image: Dataset | None,
               algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 for one eye: p and threshold as measurements, the rest as coded evaluations."""
    decision = eye.decision()
    site = hd.sr.FindingSite(anatomic_location=LENS, laterality=LATERALITY[eye.eye])
    measurements = []
    if decision.p is not None:
        measurements.append(hd.sr.Measurement(name=P_CATARACT, value=decision.p, unit=_UNITLESS,
                                              algorithm_id=algorithm, finding_sites=[site]))
    measurements.append(hd.sr.Measurement(name=THRESHOLD, value=decision.threshold, unit=_UNITLESS,
                                          algorithm_id=algorithm))
    evaluations = [hd.sr.QualitativeEvaluation(MODEL_FINDING, MODEL_FINDINGS[decision.finding])]
    if decision.p is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(INDETERMINATE, YES if decision.indeterminate else NO))
    if eye.attention_verdict is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(ATTENTION, VERDICT_CODES[eye.attention_verdict]))
    if eye.agrees is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(AGREES, YES if eye.agrees else NO))
    if eye.clinician_finding is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(CLINICIAN_FINDING, CLINICIAN_FINDINGS[eye.clinician_finding]))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=exam.uid("tracking", eye.eye, versioned=False),
                                                     identifier=f"{eye.eye} lens"),
        finding_type=CATARACT_FINDING,
        algorithm_id=algorithm,
        finding_sites=[site],
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=None if image is None else [hd.sr.SourceImageForMeasurementGroup.from_source_image(image)],
    )


def build_sr(exam: SignedExam, captures: Sequence[Dataset] = (), pdf: Dataset | None = None) -> Dataset:
    """The Comprehensive SR (TID 1500 Measurement Report) of the signed review.

    Each eye's group references its DICOM photograph, or, when the photograph did not come from
    DICOM, that eye's Secondary Capture (whose first panel is the photograph) from ``captures``.
    The Encapsulated PDF (``pdf``, built when not given) is listed as evidence.

    Raises:
        TypeError: exam is not a SignedExam.
    """
    if not isinstance(exam, SignedExam):
        raise TypeError(f"exam must be a SignedExam, got {type(exam).__name__}.")
    by_eye = {str(c.get("ImageLaterality", "")): c for c in captures}
    model = exam.model
    algorithm = hd.sr.AlgorithmIdentification(
        name=model.name, version=model.version, parameters=[f"weights SHA-256 {model.weights_sha256}"],
        manufacturer=MANUFACTURER)
    groups, evidence = [], []
    for eye in exam.ordered_eyes():
        image = eye.source if eye.source is not None else by_eye.get({"OD": "R", "OS": "L"}[eye.eye])
        if image is not None:
            evidence.append(image)
        groups.append(_eye_group(exam, eye, image, algorithm))
    context = hd.sr.ObservationContext(
        observer_person_context=hd.sr.ObserverContext(
            observer_type=codes.cid270.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=person_name(exam.signer))),
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.cid270.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=derived_uid("model", model.weights_sha256), name=model.name,
                manufacturer_name=MANUFACTURER, model_name=f"{model.name} {model.version}")),
    )
    # DICOM's verification names the signer's organization (type 1); a record that holds none
    # gives an UNVERIFIED document with the signer as the person observer, rather than a made-up one.
    verified = bool(exam.organization)
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=PROCEDURE,
                                     imaging_measurements=groups)
    # The report is evidence too: it ties the SR to the PDF, and gives the patient and study when
    # no image is referenced.
    evidence.append(pdf if pdf is not None else build_encapsulated_pdf(exam))
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence, content=report[0], series_instance_uid=exam.uid("sr-series", versioned=False),
        series_number=_SR_SERIES, sop_instance_uid=exam.uid("sr"), instance_number=exam.review_version,
        manufacturer=MANUFACTURER, is_complete=True, is_final=True, is_verified=verified,
        verifying_observer_name=person_name(exam.signer) if verified else None,
        verifying_organization=exam.organization,
        coding_schemes=[CodingSchemeIdentificationItem(designator=SCHEME, name="cataract-cam concepts")],
    )
    # The signature's manifestation (21 CFR Part 11 §11.50): printed name, date and time, meaning.
    sr.ContentSequence.append(hd.sr.TextContentItem(
        name=codes.DCM.Comment, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        value=signature_manifest(exam.signer, exam.signed_at)))
    _copy_identity(sr, _identity(exam))
    sr.SeriesDescription = "Cataract screening results"
    if verified:
        sr.VerifyingObserverSequence[0].VerificationDateTime = exam.signed_at.strftime("%Y%m%d%H%M%S")
    _stamp(sr, exam.signed_at)
    return sr


def build_objects(exam: SignedExam) -> DicomObjects:
    """Every DICOM object of a signed exam: the SR, a Secondary Capture per eye with panels, the PDF.

    Raises:
        TypeError: exam is not a SignedExam.
    """
    if not isinstance(exam, SignedExam):
        raise TypeError(f"exam must be a SignedExam, got {type(exam).__name__}.")
    captures = tuple(build_secondary_capture(exam, e) for e in exam.ordered_eyes() if e.panels is not None)
    pdf = build_encapsulated_pdf(exam)
    return DicomObjects(sr=build_sr(exam, captures, pdf), captures=captures, pdf=pdf)


def _items(ds: Dataset) -> list[Dataset]:
    return list(ds.get("ContentSequence", []) or [])


def _concept(item: Dataset) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    return str(code.CodingSchemeDesignator), str(code.CodeValue)


def _code(item: Dataset) -> tuple[str, str]:
    code = item.ConceptCodeSequence[0]
    return str(code.CodingSchemeDesignator), str(code.CodeValue)


_ALGORITHM_TEXT = {("DCM", "111001"): "algorithm_name", ("DCM", "111003"): "algorithm_version",
                   ("DCM", "111002"): "algorithm_parameters"}


def _group_values(group: Dataset) -> tuple[str | None, dict[str, object]]:
    """One measurement group's eye and values, keyed by the export's own words."""
    eye = None
    values: dict[str, object] = {}
    by_code: dict[tuple[str, str], str] = {(SCHEME, c.value): name for name, c in (
        ("model_finding", MODEL_FINDING), ("indeterminate", INDETERMINATE), ("attention_verdict", ATTENTION),
        ("agrees", AGREES), ("clinician_finding", CLINICIAN_FINDING))}
    codes_back: dict[str, dict[tuple[str, str], object]] = {
        "model_finding": {(c.scheme_designator, c.value): k for k, c in MODEL_FINDINGS.items()},
        "attention_verdict": {(c.scheme_designator, c.value): k for k, c in VERDICT_CODES.items()},
        "clinician_finding": {(c.scheme_designator, c.value): k for k, c in CLINICIAN_FINDINGS.items()},
        "agrees": {(YES.scheme_designator, YES.value): True, (NO.scheme_designator, NO.value): False},
        "indeterminate": {(YES.scheme_designator, YES.value): True, (NO.scheme_designator, NO.value): False},
    }
    for item in _items(group):
        concept = _concept(item)
        if item.ValueType == "CODE" and concept == ("SCT", "363698007"):  # finding site
            for modifier in _items(item):
                eye = {v.value: k for k, v in LATERALITY.items()}.get(_code(modifier)[1], eye)
        elif item.ValueType == "NUM":
            measured = item.MeasuredValueSequence[0]
            # The exact double when the decimal string (16 characters) could not hold it.
            number = float(measured.FloatingPointValue if "FloatingPointValue" in measured else measured.NumericValue)
            values[{P_CATARACT.value: "p", THRESHOLD.value: "threshold"}.get(concept[1], concept[1])] = number
        elif item.ValueType == "CODE" and concept in by_code:
            name = by_code[concept]
            values[name] = codes_back[name].get(_code(item))
        elif item.ValueType == "TEXT" and concept in _ALGORITHM_TEXT:
            values[_ALGORITHM_TEXT[concept]] = str(item.TextValue)
        elif item.ValueType == "IMAGE":
            values["source_sop_instance_uid"] = str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    return eye, values


def read_sr(sr: Dataset) -> dict[str, dict[str, object]]:
    """The per-eye values of an SR this module wrote: p, threshold, model finding, verdict, review.

    Keys per eye: ``p``, ``threshold``, ``model_finding`` (a screening code), ``indeterminate``,
    ``attention_verdict``, ``agrees``, ``clinician_finding``, ``source_sop_instance_uid``,
    ``algorithm_name``, ``algorithm_version``, ``algorithm_parameters``; a value the SR does not
    hold is absent.

    Raises:
        TypeError: sr is not a pydicom Dataset.
        ValueError: the dataset is not a measurement report with per-eye groups.
    """
    if not isinstance(sr, Dataset):
        raise TypeError(f"sr must be a pydicom Dataset, got {type(sr).__name__}.")
    eyes: dict[str, dict[str, object]] = {}
    for container in _items(sr):
        if container.ValueType != "CONTAINER" or _concept(container) != ("DCM", "126010"):  # Imaging Measurements
            continue
        for group in _items(container):
            eye, values = _group_values(group)
            if eye is not None:
                eyes[eye] = values
    if not eyes:
        raise ValueError("The SR holds no per-eye measurement groups; it was not written by cataract-cam.")
    return eyes
