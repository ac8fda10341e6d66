"""Runs on a Dask cluster and over object storage: batch and audit on many machines."""
