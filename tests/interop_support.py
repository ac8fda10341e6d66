"""Plain helpers for the interoperability tests: a DICOM eye photograph, a signed exam, Orthanc.

Functions only (fixtures live in the test modules), so no test module imports another.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from components.interop.exam import EyeResult, ModelIdentity, Patient, SignedExam, new_study_uid

OPHTHALMIC_8BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
SIGNED_AT = datetime(2026, 11, 30, 9, 15, 0)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def eye_photograph(eye: str = "OD", *, seed: int = 1, study_uid: str | None = None,
                   patient_id: str = "PSEUDO-7", size: int = 96) -> Dataset:
    """An Ophthalmic Photography 8 Bit image of a dark pupil on a lighter iris, with laterality."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    pixels = np.where(r < size / 6, 30, np.where(r < size / 3, 140, 220)).astype(np.float64)
    pixels = np.clip(pixels[..., None] + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = OPHTHALMIC_8BIT
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = OPHTHALMIC_8BIT
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Eye", patient_id, "19500102", "F"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20261130", "091000", "S1", "ACC1"
    ds.ReferringPhysicianName = ""
    ds.Modality = "OP"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1 if eye == "OD" else 2
    ds.ImageLaterality = {"OD": "R", "OS": "L"}[eye]
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    return ds


def signed_exam(*, source: Dataset | None = None, panels: bool = True, organization: str | None = "Eye Clinic",
                version: int = 1) -> SignedExam:
    """A two-eye signed exam with known values; ``source`` (a DICOM photograph) becomes the OD eye's."""
    pan = np.zeros((40, 120, 3), np.uint8)
    pan[:, 40:80] = (255, 0, 0)
    eyes = (
        EyeResult("OD", 0.8125, 0.5, attention_verdict="on lens", agrees=True, clinician_finding="cataract",
                  panels=pan if panels else None, source=source),
        EyeResult("OS", 0.4375, 0.5, attention_verdict="off lens: image border", agrees=False,
                  clinician_finding="normal", panels=pan[::-1].copy() if panels else None),
    )
    return SignedExam(
        exam_key="exam-0001", patient=Patient("PSEUDO-7", "Jane Roe", date(1950, 1, 2), "F"), eyes=eyes,
        signer="Dr. A. Reviewer", signed_at=SIGNED_AT, review_version=version,
        model=ModelIdentity("cataract_b0_demo", "1.2", "ab" * 32, is_demo=True), pdf=PDF,
        study_uid=None if source is not None else new_study_uid(), exam_date=date(2026, 11, 30),
        organization=organization,
    )


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """dciodvfy's errors and warnings for one file."""
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False)
    lines = (out.stdout + out.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OrthancServer:
    """A running Orthanc: its DICOMweb root, its REST root, its DICOM port and its process."""

    process: subprocess.Popen[bytes]
    http_port: int
    dicom_port: int
    config: Path

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.rest}/dicom-web"

    def instance_count(self) -> int:
        return int(requests.get(f"{self.rest}/statistics", timeout=10).json()["CountInstances"])

    def stop(self) -> None:
        """Stop by PID and wait; safe to call twice."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def start_again(self, timeout: float = 30) -> None:
        """Start Orthanc again on the same ports and storage."""
        self.process = _launch(self.config, self.http_port, timeout)


def _launch(config: Path, http_port: int, timeout: float) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([ORTHANC, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with code {process.returncode} before it answered.")
        try:
            # Any answer means it serves HTTP (401 when authentication is on).
            if requests.get(f"http://127.0.0.1:{http_port}/system", timeout=1).status_code in (200, 401):
                return process
        except requests.RequestException:
            time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    raise RuntimeError(f"Orthanc did not answer /system within {timeout} s.")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def start_orthanc(folder: Path, timeout: float = 30, users: dict[str, str] | None = None,
                  lua: str | None = None) -> OrthancServer:
    """Debian's Orthanc with the DICOMweb plugin, on 127.0.0.1, free ports, storage in ``folder``.

    ``users``: HTTP basic-authentication users and passwords (none: no authentication).
    ``lua``: a Lua script for Orthanc to run (for example a filter refusing some instances).
    """
    http_port, dicom_port = free_port(), free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "orthanc.json"
    config.write_text(json.dumps({
        "Name": "cataract-cam-test", "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"), "HttpPort": http_port, "DicomPort": dicom_port,
        "DicomAet": "ORTHANC", "RemoteAccessAllowed": False, "AuthenticationEnabled": bool(users),
        "RegisteredUsers": users or {},
        "Plugins": [DICOMWEB_PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpTimeout": 10, "StableAge": 1, "SaveJobs": False,
        "LuaScripts": [str(_write(folder / "script.lua", lua))] if lua else [],
    }))
    return OrthancServer(_launch(config, http_port, timeout), http_port, dicom_port, config)
