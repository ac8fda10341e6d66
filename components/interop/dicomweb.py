"""A PACS over DICOMweb: search studies (QIDO-RS), pull photographs (WADO-RS), send results (STOW-RS).

Every failure of the PACS (down, refused, timed out, an HTTP error, an instance it would not store)
becomes one :class:`PacsError` whose message is one sentence, names no patient and says that
nothing local was lost; sending again is always safe, since objects the PACS already holds are
skipped and the others keep their SOP Instance UIDs.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset

from components.base import config
from components.base.errors import CataractCamError
from components.imaging.loading import DecodedImage, decode_image

__all__ = [
    "PHOTOGRAPH_MODALITIES",
    "DicomWebConfig",
    "PacsClient",
    "PacsError",
    "SendResult",
    "StudySummary",
    "dataset_bytes",
    "photograph",
]

PHOTOGRAPH_MODALITIES = ("OP", "XC")
"""Series modalities that hold eye photographs (ophthalmic photography, external camera)."""
SEARCH_MODALITIES = ("OP", "XC", "SC")

_NOTHING_LOST = "nothing local was lost and it can be tried again"
_WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


class PacsError(CataractCamError, RuntimeError):
    """The PACS could not be reached or refused a request; the message is one sentence."""


@dataclass(frozen=True)
class DicomWebConfig:
    """Where the PACS is and how to authenticate: basic (user and password) or bearer (token)."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    timeout: float = 20.0

    def __post_init__(self) -> None:
        if not isinstance(self.url, str):
            raise TypeError(f"The DICOMweb URL must be a str, got {type(self.url).__name__}.")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("The DICOMweb URL must start with http:// or https:// and name a host.")
        if (self.user is None) != (self.password is None):
            raise ValueError("Basic authentication needs both a user and a password.")
        if self.token is not None and self.user is not None:
            raise ValueError("Give either a user and password or a bearer token, not both.")
        if not self.timeout > 0:
            raise ValueError(f"The timeout must be positive, got {self.timeout!r}.")

    @property
    def where(self) -> str:
        """The PACS's host and port, for messages (never the credentials or the path)."""
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)

    @classmethod
    def configured(cls, *, url: str | None = None, timeout: float = 20.0) -> DicomWebConfig | None:
        """The PACS from ``url`` or the settings (``CATARACT_CAM_DICOMWEB_URL`` and its credentials); None when no URL.

        Each setting is read from the environment, else the secrets file (components.base.config);
        an explicit ``url`` wins over both.

        Raises:
            ValueError: a malformed URL or an incomplete credential pair.
        """
        url = url or config.text(config.DICOMWEB_URL)
        if not url:
            return None
        return cls(url=url, user=config.text(config.DICOMWEB_USER), password=config.text(config.DICOMWEB_PASSWORD),
                   token=config.text(config.DICOMWEB_TOKEN), timeout=timeout)


@dataclass(frozen=True)
class StudySummary:
    """One study as a QIDO search lists it."""

    study_uid: str
    patient_id: str
    study_date: str
    modalities: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class SendResult:
    """What a send did: the SOP Instance UIDs stored now, and those the PACS already held."""

    stored: tuple[str, ...]
    already_present: tuple[str, ...]


def dataset_bytes(ds: Dataset) -> bytes:
    """A dataset as a DICOM Part 10 file in memory.

    Raises:
        TypeError: ds is not a pydicom Dataset.
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f"Expected a pydicom Dataset, got {type(ds).__name__}.")
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def photograph(ds: Dataset) -> DecodedImage:
    """The RGB pixels and laterality of a pulled DICOM photograph, through the product's safe decoder.

    Raises:
        TypeError: ds is not a pydicom Dataset.
        components.imaging.loading.ImageError: no pixel data, an unsupported transfer syntax or encoding.
    """
    return decode_image(dataset_bytes(ds))


def _multipart_parts(response: requests.Response) -> list[bytes]:
    """The bodies of a multipart/related response (or the whole body when it is not multipart)."""
    content_type = response.headers.get("Content-Type", "")
    boundary = next((p.split("=", 1)[1].strip().strip('"') for p in content_type.split(";")
                     if p.strip().lower().startswith("boundary=")), None)
    if not content_type.lower().startswith("multipart/") or not boundary:
        return [response.content]
    parts = []
    for chunk in response.content.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        _, _, body = chunk.partition(b"\r\n\r\n")
        parts.append(body[:-2] if body.endswith(b"\r\n") else body)
    return parts


def _value(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


class PacsClient:
    """QIDO-RS, WADO-RS and STOW-RS against one PACS, with one clear error for every failure."""

    def __init__(self, config: DicomWebConfig) -> None:
        """Connects lazily: nothing is sent until a method is called.

        Raises:
            TypeError: config is not a DicomWebConfig.
        """
        if not isinstance(config, DicomWebConfig):
            raise TypeError(f"config must be a DicomWebConfig, got {type(config).__name__}.")
        self.config = config
        session = requests.Session()
        if config.user is not None and config.password is not None:
            session.auth = (config.user, config.password)
        self._session = session
        self._headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        self._client = DICOMwebClient(url=config.url.rstrip("/"), session=session, headers=self._headers or None,
                                      timeout=config.timeout)
        # A failed request reports at once; the caller decides when to try again.
        self._client.set_http_retry_params(retry=False)

    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        where = self.config.where
        try:
            return fn(*args, **kwargs)
        except requests.exceptions.Timeout:
            raise PacsError(f"The PACS at {where} did not answer within {self.config.timeout:g} s while "
                            f"{action}; {_NOTHING_LOST}.") from None
        except requests.exceptions.ConnectionError:
            raise PacsError(f"The PACS at {where} could not be reached (down or refusing connections) while "
                            f"{action}; {_NOTHING_LOST}.") from None
        except requests.exceptions.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else "error"
            why = "refused the credentials" if code in (401, 403) else f"answered HTTP {code}"
            raise PacsError(f"The PACS at {where} {why} while {action}; {_NOTHING_LOST}.") from None
        except requests.exceptions.RequestException:
            raise PacsError(f"The request to the PACS at {where} failed while {action}; {_NOTHING_LOST}.") from None

    def search_studies(self, *, patient_id: str | None = None, study_date: str | None = None,
                       modalities: Sequence[str] = SEARCH_MODALITIES, limit: int = 100) -> list[StudySummary]:
        """Studies holding any of ``modalities``, optionally for one patient ID and a date or range.

        ``study_date`` is DICOM's form: ``YYYYMMDD`` or ``YYYYMMDD-YYYYMMDD``.

        Raises:
            ValueError: an empty modality list or a limit below 1.
            PacsError: the PACS failed.
        """
        if not modalities:
            raise ValueError("Search at least one modality (OP, XC or SC).")
        if limit < 1:
            raise ValueError(f"The limit must be at least 1, got {limit}.")
        found: dict[str, StudySummary] = {}
        for modality in modalities:  # one query each: multi-valued QIDO filters differ between servers
            filters = {"ModalitiesInStudy": modality}
            if patient_id:
                filters["PatientID"] = patient_id
            if study_date:
                filters["StudyDate"] = study_date
            rows = self._call("searching studies", self._client.search_for_studies, search_filters=filters,
                              fields=["ModalitiesInStudy", "StudyDescription"], limit=limit)
            for row in rows:
                ds = Dataset.from_json(row)
                uid = _value(ds, "StudyInstanceUID")
                mods = ds.get("ModalitiesInStudy", [])
                found.setdefault(uid, StudySummary(
                    study_uid=uid, patient_id=_value(ds, "PatientID"), study_date=_value(ds, "StudyDate"),
                    modalities=tuple(str(m) for m in (mods if isinstance(mods, Iterable) and not isinstance(
                        mods, str) else [mods]) if str(m)),
                    description=_value(ds, "StudyDescription")))
        return sorted(found.values(), key=lambda s: (s.study_date, s.study_uid), reverse=True)[:limit]

    def instances(self, study_uid: str, *, modalities: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
        """(series UID, SOP Instance UID, SOP Class UID) of the study's instances, optionally by series modality.

        Raises:
            PacsError: the PACS failed.
        """
        series = self._call("listing the study's series", self._client.search_for_series,
                            study_instance_uid=study_uid)
        out = []
        for row in series:
            s = Dataset.from_json(row)
            if modalities is not None and _value(s, "Modality") not in modalities:
                continue
            rows = self._call("listing the study's instances", self._client.search_for_instances,
                              study_instance_uid=study_uid, series_instance_uid=_value(s, "SeriesInstanceUID"))
            for r in rows:
                ds = Dataset.from_json(r)
                out.append((_value(s, "SeriesInstanceUID"), _value(ds, "SOPInstanceUID"), _value(ds, "SOPClassUID")))
        return out

    def retrieve(self, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
        """One instance, whole (WADO-RS), in the transfer syntax the PACS stored it in.

        Raises:
            PacsError: the PACS failed, or sent something other than that DICOM instance.
        """
        url = f"{self.config.url.rstrip('/')}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"

        def get() -> requests.Response:
            response = self._session.get(url, headers={"Accept": _WADO_ACCEPT, **self._headers},
                                         timeout=self.config.timeout)
            response.raise_for_status()
            return response

        response = self._call("retrieving an instance", get)
        parts = _multipart_parts(response)
        try:
            # force: Orthanc's DICOMweb plugin up to 1.7 sends each part without the 128-byte
            # preamble and "DICM"; the file meta information that follows is read all the same.
            ds = dcmread(io.BytesIO(parts[0]), force=True) if len(parts) == 1 else None
        except Exception:  # pydicom raises many kinds on malformed data
            ds = None
        if ds is None or _value(ds, "SOPInstanceUID") != sop_uid:
            raise PacsError(f"The PACS at {self.config.where} did not return the requested DICOM instance; "
                            f"{_NOTHING_LOST}.")
        return ds

    def pull_photographs(self, study_uid: str) -> list[Dataset]:
        """Every eye photograph (series modality OP or XC) of a study.

        Raises:
            PacsError: the PACS failed.
        """
        return [self.retrieve(study_uid, series, sop)
                for series, sop, _ in self.instances(study_uid, modalities=PHOTOGRAPH_MODALITIES)]

    def send(self, datasets: Sequence[Dataset]) -> SendResult:
        """Store the objects (STOW-RS), skipping those whose SOP Instance UID the PACS already holds.

        All objects must belong to one study. A send counts only when a search afterwards finds
        every object in the PACS.

        Raises:
            TypeError: an item is not a Dataset.
            ValueError: no objects, or objects from more than one study.
            PacsError: the PACS failed or refused some of them.
        """
        if not datasets:
            raise ValueError("Nothing to send.")
        for ds in datasets:
            if not isinstance(ds, Dataset):
                raise TypeError(f"Each object must be a pydicom Dataset, got {type(ds).__name__}.")
        studies = {_value(ds, "StudyInstanceUID") for ds in datasets}
        if len(studies) != 1:
            raise ValueError("Send one study at a time; the objects belong to several studies.")
        study = studies.pop()
        held = {sop for _, sop, _ in self.instances(study)}
        todo = [ds for ds in datasets if _value(ds, "SOPInstanceUID") not in held]
        already = tuple(_value(ds, "SOPInstanceUID") for ds in datasets if _value(ds, "SOPInstanceUID") in held)
        if todo:
            response = self._call("sending the results", self._client.store_instances, datasets=todo,
                                  study_instance_uid=study)
            failed = list(response.get("FailedSOPSequence", []) or []) if response is not None else []
            # Some PACS answer success for an object a filter then dropped (Orthanc 1.10 with a Lua
            # filter does): only what a search finds afterwards counts as sent.
            if not failed:
                now_held = {sop for _, sop, _ in self.instances(study)}
                failed = [ds for ds in todo if _value(ds, "SOPInstanceUID") not in now_held]
            if failed:
                raise PacsError(f"The PACS at {self.config.where} refused {len(failed)} of {len(todo)} objects; "
                                f"{_NOTHING_LOST}.")
        return SendResult(stored=tuple(_value(ds, "SOPInstanceUID") for ds in todo), already_present=already)
