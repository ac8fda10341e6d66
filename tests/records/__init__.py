"""Tests of the patient record store (components.records)."""
