"""Patients: creation, pseudonymous IDs, the checks on each field, updates and search."""

from __future__ import annotations

from datetime import UTC, date

import pytest

from components.records import AlreadyExists, NotFound, RecordsError, RecordStore, ValidationError
from tests.support import who


def test_patient_create_read_update_and_search(store: RecordStore) -> None:
    created = store.create_patient("P-001", name="Ada Example", birth_date="1948-02-29", sex="F", actor=who("dr.a"))
    assert created.pseudo_id == "P-001"
    assert created.birth_date == date(1948, 2, 29)
    assert created.created_at.tzinfo is UTC
    assert store.get_patient("P-001") == created

    updated = store.update_patient("P-001", actor=who("dr.a"), name="Ada Other", sex="X")
    assert (updated.name, updated.sex, updated.birth_date) == ("Ada Other", "X", date(1948, 2, 29))
    assert store.get_patient("P-001") == updated
    assert store.update_patient("P-001", actor=who("dr.a"), birth_date=None).birth_date is None

    store.create_patient("Q_2.b", name="Bob Sample")
    store.create_patient("R3")
    assert [p.pseudo_id for p in store.list_patients()] == ["P-001", "Q_2.b", "R3"]
    assert [p.pseudo_id for p in store.list_patients("other")] == ["P-001"]
    assert [p.pseudo_id for p in store.list_patients("q_2")] == ["Q_2.b"]
    # "_" and "%" are literal characters in a search, not SQL wildcards.
    assert [p.pseudo_id for p in store.list_patients("%")] == []
    assert [p.pseudo_id for p in store.list_patients("_")] == ["Q_2.b"]


@pytest.mark.parametrize("bad_id", ["", "has space", "x" * 65, "slash/id", "accént", "tab\t", None, 42,
                                    ".", "..", ".hidden", "-option", "_x"])
def test_bad_pseudo_ids_are_refused(store: RecordStore, bad_id: object) -> None:
    with pytest.raises(ValidationError, match=r"pseudonymous ID must be 1 to 64.*starting with a letter or a digit"):
        store.create_patient(bad_id)  # type: ignore[arg-type]
    assert store.list_patients() == []


def test_longest_and_punctuated_ids_are_accepted(store: RecordStore) -> None:
    for pseudo_id in ["x" * 64, "a", "A-b_c.9", "9..x", "z."]:
        assert store.create_patient(pseudo_id).pseudo_id == pseudo_id


def test_duplicate_id_is_refused_without_quoting_it(store: RecordStore) -> None:
    store.create_patient("DUP-7", name="Carol First")
    with pytest.raises(AlreadyExists) as error:
        store.create_patient("DUP-7", name="Carol Second")
    assert "DUP-7" not in str(error.value)
    assert "Carol" not in str(error.value)
    assert store.get_patient("DUP-7").name == "Carol First"
    assert [event.action for event in store.audit_trail()] == ["created"]


def test_patient_field_validation(store: RecordStore) -> None:
    store.create_patient("P1")
    with pytest.raises(ValidationError, match="sex must be one of: F, M, X"):
        store.create_patient("P2", sex="female")
    with pytest.raises(ValidationError, match="birth date must not be in the future"):
        store.create_patient("P2", birth_date=date(date.today().year + 1, 1, 1))
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        store.create_patient("P2", birth_date="03/04/1950")
    with pytest.raises(ValidationError, match="only name, birth_date, sex can be updated"):
        store.update_patient("P1", actor=who("dr"), pseudo_id="P9")
    with pytest.raises(NotFound):
        store.get_patient("nobody")
    with pytest.raises(NotFound):
        store.update_patient("nobody", actor=who("dr"), name="x")
    assert issubclass(NotFound, RecordsError)
    assert issubclass(RecordsError, ValueError)


@pytest.mark.parametrize("control", ["\x1b", "\x00", "\n", "\t", "\x7f", "\x85", "\u2028"])
def test_control_characters_in_names_are_refused_with_one_sentence(store: RecordStore, control: str) -> None:
    # Before the fix an ESC in a name reached DICOM PatientName (pydicom then chose another
    # character set per file) and FHIR name.text, where FHIR forbids control characters.
    with pytest.raises(ValidationError, match=r"^the name must not contain control characters \(found U\+"):
        store.create_patient("CTRL-1", name=f"Ada{control}Lovelace")
    assert store.list_patients() == []
    store.create_patient("CTRL-1", name="Ada Lovelace")
    with pytest.raises(ValidationError, match="must not contain control characters"):
        store.update_patient("CTRL-1", actor=who("dr"), name=f"Eve{control}X")
    assert store.get_patient("CTRL-1").name == "Ada Lovelace"
    with pytest.raises(ValidationError, match="the search must not contain control characters"):
        store.list_patients(f"Ada{control}x")
