"""Cost of the clinic exports: making the DICOM and FHIR objects of one exam, and sending it to Orthanc.

    python benchmarks/bench_interop.py [--repeats 7]

Two full-size CSDI photographs are explained once, outside the timing, and the PDF report is built
once. Timed, each as the median of ``--repeats``:

- making the objects of a two-eye exam: the SR, two Secondary Captures, the Encapsulated PDF and
  the FHIR Bundle (target <= 0.5 s), beside the PDF report's own build as the baseline;
- sending one exam of three objects (one eye: SR, Secondary Capture, PDF) by STOW-RS to a
  Debian Orthanc started here on 127.0.0.1, with its duplicate check (a QIDO first), beside a
  plain upload of the same three files through Orthanc's REST API as the baseline; each repeat
  goes to a fresh study so every send stores all three.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import requests
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.explanation.cam import explain  # noqa: E402
from components.interop.assemble import eye_result  # noqa: E402
from components.interop.dicom_objects import build_objects  # noqa: E402
from components.interop.dicomweb import DicomWebConfig, PacsClient, dataset_bytes  # noqa: E402
from components.interop.exam import ModelIdentity, Patient, SignedExam, new_study_uid  # noqa: E402
from components.interop.fhir import build_bundle  # noqa: E402
from components.report import EyeFindings, ModelInfo, PatientInfo, build_report  # noqa: E402
from models import Classifier, build_model  # noqa: E402
from tests.interop_support import start_orthanc  # noqa: E402

CSDI = ROOT / "tests" / "data" / "csdi"  # real fundus photographs, CC BY 4.0: attribution in its README.md
PHOTOS = ("DLY-OD.jpg", "HJX1.jpg")
TARGET_BUILD_SECONDS = 0.5


def _median(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    fn()  # warm-up: imports, fonts, first allocations
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _photographs() -> list[np.ndarray]:
    """The CSDI photographs where the checkout has them, else seeded pictures of the same sizes."""
    if all((CSDI / name).is_file() for name in PHOTOS):
        print(f"photographs: {', '.join(PHOTOS)} (CSDI)")
        return [np.asarray(Image.open(CSDI / name).convert("RGB")) for name in PHOTOS]
    print("photographs: seeded stand-ins at the CSDI sizes (tests/data/csdi is not in this checkout)")
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in ((2734, 1822), (1696, 1654))]


def make_exam() -> tuple[SignedExam, float]:
    """A signed two-eye exam from the CSDI photographs, and the PDF report's median build time."""
    torch.manual_seed(0)
    clf = Classifier(model=build_model(2).eval(), class_names=("Cataract", "Normal"), weights_sha256="0" * 64,
                     card={"name": "benchmark-b0", "version": "0", "demo": True})
    images = _photographs()
    explanations = explain(clf, images)
    eyes = tuple(eye_result(eye, img, ex, threshold=clf.threshold, agrees=True, clinician_finding="normal",
                            modality="fundus") for eye, img, ex in zip(("OD", "OS"), images, explanations, strict=True))
    findings = [EyeFindings(e.eye, img, ex, modality="fundus") for e, img, ex in zip(eyes, images, explanations,
                                                                                      strict=True)]
    report_seconds, pdf = _median(lambda: build_report(PatientInfo("BENCH-001"), findings,
                                                       ModelInfo.from_classifier(clf)), 3)
    assert isinstance(pdf, bytes)
    exam = SignedExam(exam_key="bench", patient=Patient("BENCH-001"), eyes=eyes, signer="Dr. A",
                      signed_at=datetime(2026, 11, 30, 9, 0), review_version=1,
                      model=ModelIdentity("benchmark-b0", "0", "0" * 64, is_demo=True), pdf=pdf,
                      study_uid=new_study_uid(), organization="Bench Clinic")
    return exam, report_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each step (default 7)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    exam, report_seconds = make_exam()

    build_seconds, _ = _median(lambda: (build_objects(exam), build_bundle(exam)), args.repeats)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    w, h = exam.eyes[0].panels.shape[1], exam.eyes[0].panels.shape[0]  # type: ignore[union-attr]
    print(f"input: two eyes, panels {w}x{h}, PDF {len(exam.pdf) / 1e6:.2f} MB")
    print(f"baseline, PDF report build:        {report_seconds:.3f} s")
    print(f"DICOM (SR, 2 SC, PDF) + FHIR:      {build_seconds:.3f} s  "
          f"ratio to report {build_seconds / report_seconds:.2f}  target {TARGET_BUILD_SECONDS:.1f} s  "
          f"ratio to target {build_seconds / TARGET_BUILD_SECONDS:.2f}")

    one_eye = dataclasses.replace(exam, eyes=exam.eyes[:1])
    with tempfile.TemporaryDirectory() as folder:
        orthanc = start_orthanc(Path(folder))
        try:
            client = PacsClient(DicomWebConfig(orthanc.dicomweb))

            def fresh() -> list[bytes]:
                objects = build_objects(dataclasses.replace(one_eye, study_uid=new_study_uid()))
                return [dataset_bytes(d) for d in objects.all()]

            def fresh_objects() -> list:  # type: ignore[type-arg]
                return build_objects(dataclasses.replace(one_eye, study_uid=new_study_uid())).all()

            raw_times, stow_times = [], []
            for _ in range(args.repeats + 1):
                files, objects = fresh(), fresh_objects()
                start = time.perf_counter()
                for body in files:
                    requests.post(f"{orthanc.rest}/instances", data=body, timeout=60).raise_for_status()
                raw_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                result = client.send(objects)
                stow_times.append(time.perf_counter() - start)
                assert len(result.stored) == 3
            raw, stow = statistics.median(raw_times[1:]), statistics.median(stow_times[1:])
            size = sum(len(b) for b in fresh()) / 1e6
        finally:
            orthanc.stop()
    print(f"send one exam (3 objects, {size:.2f} MB) to Orthanc:")
    print(f"  baseline, plain REST upload:     {raw:.3f} s")
    print(f"  STOW-RS with duplicate check:    {stow:.3f} s  ratio to baseline {stow / raw:.2f}")
    return 0 if build_seconds <= TARGET_BUILD_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
