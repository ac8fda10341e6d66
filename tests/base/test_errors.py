"""One error root: every exception class the project defines derives from CataractCamError, each defined once."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import Counter

import pytest

import components
import dashboard
import models
from components.base.errors import CataractCamError, StorageError
from components.cluster import storage
from components.records import errors as records_errors


def _project_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (components, models, dashboard):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if info.name.endswith(("__main__", "dashboard.app")) or ".views." in info.name:  # scripts run on import
                continue
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__.split(".")[0] in ("components", "models",
                                                                                       "dashboard"):
                    found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(found.values())


def test_every_project_exception_has_the_one_root() -> None:
    classes = _project_exceptions()
    assert len(classes) >= 20  # the walk reaches every package
    assert sorted(c.__qualname__ for c in classes if not issubclass(c, CataractCamError)) == []


def test_each_error_class_is_defined_once() -> None:
    names = Counter(c.__qualname__ for c in _project_exceptions())
    assert [name for name, count in names.items() if count > 1] == []
    # The record store and the cluster's locations raise the same StorageError.
    assert records_errors.StorageError is storage.StorageError is StorageError


def test_one_clause_catches_what_any_layer_says_went_wrong() -> None:
    from components.imaging.loading import decode_image
    from components.records import RecordStore
    from models import load_classifier

    failures = [lambda: decode_image(b"not an image"), lambda: load_classifier("/nonexistent/model.pt"),
                lambda: storage.split_s3("s3://"), lambda: RecordStore("postgresql+psycopg://")]
    for fail in failures:
        with pytest.raises(CataractCamError) as caught:
            fail()
        # One sentence for a person: no traceback text, no repr of an object.
        message = str(caught.value)
        assert message
        assert "\n" not in message
        assert "Traceback" not in message
