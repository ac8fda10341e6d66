"""Results into the clinic's systems: DICOM objects, a PACS over DICOMweb or DIMSE, and FHIR R4.

Nothing here imports Streamlit; the CLI and the dashboard call these modules.
"""
