"""Sending results to a PACS without DICOMweb: DICOM C-STORE (pynetdicom) to ``AET@HOST:PORT``.

Failures raise the same :class:`components.interop.dicomweb.PacsError` as DICOMweb, one sentence,
with nothing local lost; C-STORE of an instance the PACS already holds is answered by the PACS
(most keep the first copy), and the SOP Instance UIDs stay the same on every send.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from components.interop.dicomweb import PacsError

__all__ = ["DimseTarget", "c_store", "parse_target"]

_TARGET = re.compile(r"(?P<aet>[^@\\]{1,16})@(?P<host>[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})")
_CALLING_AET = "CATARACT_CAM"
_NOTHING_LOST = "nothing local was lost and it can be tried again"


@dataclass(frozen=True)
class DimseTarget:
    """A DICOM node: its Application Entity title, host and port."""

    aet: str
    host: str
    port: int


def parse_target(text: str) -> DimseTarget:
    """``AET@HOST:PORT`` as a :class:`DimseTarget`.

    Raises:
        TypeError: text is not a string.
        ValueError: not of that form, an AE title over 16 characters, or a port outside 1-65535.
    """
    if not isinstance(text, str):
        raise TypeError(f"The DIMSE target must be a str, got {type(text).__name__}.")
    match = _TARGET.fullmatch(text.strip())
    if match is None:
        raise ValueError("The DIMSE target must read AET@HOST:PORT, with an AE title of at most 16 characters.")
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise ValueError(f"The DIMSE port must lie in 1-65535, got {port}.")
    return DimseTarget(aet=match["aet"].strip(), host=match["host"].strip("[]"), port=port)


def c_store(datasets: Sequence[Dataset], target: DimseTarget | str, *, timeout: float = 20.0) -> list[str]:
    """Send the objects with C-STORE over one association; returns their SOP Instance UIDs.

    Raises:
        TypeError: an item is not a Dataset.
        ValueError: no objects, or a malformed target.
        PacsError: the association was refused or failed, or the PACS refused an object.
    """
    from pynetdicom import AE  # imported here: only DIMSE sends pay for loading pynetdicom

    if isinstance(target, str):
        target = parse_target(target)
    if not datasets:
        raise ValueError("Nothing to send.")
    for ds in datasets:
        if not isinstance(ds, Dataset):
            raise TypeError(f"Each object must be a pydicom Dataset, got {type(ds).__name__}.")
    where = f"{target.aet}@{target.host}:{target.port}"
    ae = AE(ae_title=_CALLING_AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(target.host, target.port, ae_title=target.aet)
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else "could not be reached or did not answer"
        raise PacsError(f"The DICOM node {where} {why}; {_NOTHING_LOST}.")
    sent: list[str] = []
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(getattr(status, "Status", -1)) if status else -1
            # 0x0000 success; 0xB000, 0xB007, 0xB006 are warnings with the object stored.
            if code not in (0x0000, 0xB000, 0xB006, 0xB007):
                raise PacsError(f"The DICOM node {where} refused an object (status 0x{code & 0xFFFF:04X}) after "
                                f"{len(sent)} of {len(datasets)} were stored; {_NOTHING_LOST}.")
            sent.append(str(ds.SOPInstanceUID))
    finally:
        assoc.release()
    return sent
