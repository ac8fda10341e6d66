"""Hostile checkpoint metadata: every field out of bounds or of the wrong type gets one error naming it."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from models import CheckpointError, load_classifier, load_classifier_bytes
from models.classifier import default_head
from tests.support import seeded_model


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return seeded_model(0, calibrate=False).state_dict()


def _bytes(state: dict[str, torch.Tensor], **meta: object) -> bytes:
    buffer = io.BytesIO()
    torch.save({"model_state_dict": state, **meta}, buffer)
    return buffer.getvalue()


BAD_FIELDS = [
    ({"input_size": 10**6}, "input_size is 1000000"),
    ({"input_size": -3}, "input_size is -3"),
    ({"input_size": 31}, "input_size is 31"),
    ({"input_size": 1025}, "input_size is 1025"),
    ({"input_size": "224"}, "input_size is '224'"),
    ({"input_size": 224.5}, "input_size is 224.5"),
    ({"input_size": True}, "input_size is True"),
    ({"normalization": {"std": [0.0, 0.2, 0.2]}}, "normalization std"),
    ({"normalization": {"std": [-0.2, 0.2, 0.2]}}, "normalization std"),
    ({"normalization": {"std": [math.inf, 0.2, 0.2]}}, "normalization std"),
    ({"normalization": {"mean": [0.5, 0.5, 0.5, 0.5, 0.5]}}, "normalization mean"),
    ({"normalization": {"mean": [math.nan, 0.5, 0.5]}}, "normalization mean"),
    ({"normalization": {"mean": "0.5"}}, "normalization mean"),
    ({"normalization": [0.5, 0.5, 0.5]}, "normalization is a list"),
    ({"threshold": 7.5}, "threshold is 7.5"),
    ({"threshold": -0.1}, "threshold is -0.1"),
    ({"threshold": math.nan}, "threshold is nan"),
    ({"threshold": "0.5"}, "threshold is '0.5'"),
    ({"class_names": ["Cataract"]}, "class_names has 1 names; expected 2 to 20"),
    ({"class_names": [f"c{i}" for i in range(21)]}, "class_names has 21 names"),
    ({"class_names": ["Cataract", 3]}, "class_names holds a int"),
    ({"class_names": ["Cataract", ["Normal"]]}, "class_names holds a list"),
    ({"class_names": ["Cataract", ""]}, "class_names holds an empty name"),
    ({"class_names": ["Cataract", "N" * 65]}, "over 64 characters"),
    ({"class_names": ["Cataract", "Nor\nmal"]}, "control characters"),
    ({"class_names": ["Normal", "Normal"]}, "repeats a name"),
    ({"class_names": "CN"}, "class_names is a str"),
    ({"class_names": ["a", "b", "c"]}, "names 3 classes but its head has 2 outputs"),
    ({"class_to_idx": {"Cataract": "0", "Normal": 1}}, "class_to_idx"),
    ({"head_activation": ["relu"]}, "head_activation"),
]


@pytest.mark.parametrize(("meta", "expected"), BAD_FIELDS, ids=[str(m) for m, _ in BAD_FIELDS])
def test_bad_metadata_field_is_one_error_naming_it(state, meta, expected):
    with pytest.raises(CheckpointError) as err:
        load_classifier_bytes(_bytes(state, **meta))
    message = str(err.value)
    assert expected in message
    assert "\n" not in message
    assert message.startswith("The checkpoint")


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1, "0.2", math.nan, None])
def test_bad_dropout_in_a_head_spec_is_a_checkpoint_error_not_a_raw_value_error(state, p):
    head = default_head(2)
    head[0]["p"] = p
    with pytest.raises(CheckpointError, match=r"dropout p of .*expected a number in \[0, 1\)"):
        load_classifier_bytes(_bytes(state, head=head))


@pytest.mark.parametrize("size", [0, -5, 10**9, "1280", 1280.0])
def test_bad_layer_size_in_a_head_spec_is_named(state, size):
    head = default_head(2)
    head[1]["in"] = size
    with pytest.raises(CheckpointError, match="linear layer whose in is"):
        load_classifier_bytes(_bytes(state, head=head))


def test_a_head_entry_that_is_not_a_mapping_is_named(state):
    with pytest.raises(CheckpointError, match="head holds a str"):
        load_classifier_bytes(_bytes(state, head=["dropout", "linear"]))


def test_bad_fields_in_the_sidecar_card_are_named_as_the_cards(tmp_path, state):
    path = tmp_path / "m.pt"
    path.write_bytes(_bytes(state))
    path.with_suffix(".json").write_text(json.dumps({"input_size": 4096}), encoding="utf-8")
    with pytest.raises(CheckpointError, match="The model card's input_size is 4096; expected a whole number"):
        load_classifier(path)
    path.with_suffix(".json").write_text(json.dumps({"threshold": 7.5}), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"The model card's threshold is 7\.5"):
        load_classifier(path)


def test_bounds_themselves_are_accepted_and_used(state):
    clf = load_classifier_bytes(_bytes(state, input_size=32, threshold=1, class_names=["Cataract", "Normal"],
                                       normalization={"mean": [0, 0, 0], "std": [1, 2, 3]}))
    assert (clf.input_size, clf.threshold, clf.mean, clf.std) == (32, 1.0, (0.0, 0.0, 0.0), (1.0, 2.0, 3.0))
    clf = load_classifier_bytes(_bytes(state, input_size=1024.0, threshold=0))
    assert (clf.input_size, clf.threshold) == (1024, 0.0)
    # The checkpoint's own fields win over its card's.
    clf = load_classifier_bytes(_bytes(state, input_size=64), card={"input_size": 4096, "threshold": 0.25})
    assert (clf.input_size, clf.threshold) == (64, 0.25)


def test_shipped_demo_model_passes_the_checks():
    clf = load_classifier()
    assert clf.input_size == 256
    assert 0 < clf.threshold < 1
    assert clf.class_names == ("Cataract", "Normal")
