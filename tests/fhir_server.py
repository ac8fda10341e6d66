"""A FHIR R4B test endpoint: fhirstarter over an in-memory store, run by the tests as its own process.

Start: ``FHIR_SEQUENCE=R4B python -m uvicorn tests.fhir_server:app --host 127.0.0.1 --port N``.
fhirstarter validates every resource it receives with fhir.resources' R4B models.
"""

from __future__ import annotations

import json
import os
from typing import Any

os.environ.setdefault("FHIR_SEQUENCE", "R4B")

from fastapi import HTTPException
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhirstarter import FHIRProvider, FHIRStarter, InteractionContext
from fhirstarter.exceptions import FHIRResourceNotFoundError

STORE: dict[str, dict[str, str]] = {}
app = FHIRStarter(title="cataract-cam test FHIR endpoint")
provider = FHIRProvider()


def _register(resource_type: type) -> None:
    name = resource_type.get_resource_type()
    STORE[name] = {}

    async def update(context: InteractionContext, id_: str, resource):  # type: ignore[no-untyped-def]
        STORE[name][id_] = resource.model_dump_json()
        return id_

    async def read(context: InteractionContext, id_: str):  # type: ignore[no-untyped-def]
        if id_ not in STORE[name]:
            raise FHIRResourceNotFoundError
        return resource_type.model_validate_json(STORE[name][id_])

    # fhirstarter builds its routes from the handlers' annotations, so each type gets its own.
    update.__annotations__ = {"context": InteractionContext, "id_": str, "resource": resource_type, "return": str}
    read.__annotations__ = {"context": InteractionContext, "id_": str, "return": resource_type}
    provider.update(resource_type)(update)
    provider.read(resource_type)(read)


@app.get("/_stored/{resource_type}/{id_}")
async def stored(resource_type: str, id_: str) -> dict[str, Any]:
    """The resource exactly as stored. fhirstarter 4.2's own read cannot serialise base64Binary
    elements (the PDF) of fhir.resources 8 models, so the tests read the store here."""
    text = STORE.get(resource_type, {}).get(id_)
    if text is None:
        raise HTTPException(status_code=404)
    return dict(json.loads(text))


for _type in (Patient, Practitioner, Device, ImagingStudy, Observation, DiagnosticReport):
    _register(_type)
app.add_providers(provider)
