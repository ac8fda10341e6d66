"""Roles, the actor text the records keep, and where the dashboard may serve: dashboard.access without Streamlit."""

from __future__ import annotations

import pytest

from dashboard.access import (
    AccessSettings,
    Person,
    bind_refusal,
    identity,
    is_local_address,
    local_person,
    person_from_claims,
)

ISSUER = "https://idp.example.org/realms/clinic"
CLAIMS = {"iss": ISSUER, "sub": "f3c1-77", "name": "Dr Ada Example", "email": "Ada@Clinic.example",
          "email_verified": True}


def test_roles_come_from_the_configured_claim_as_a_list_or_text() -> None:
    keycloak = AccessSettings.from_mapping({"role_claim": "realm_access.roles"})
    nested = person_from_claims({**CLAIMS, "realm_access": {"roles": ["clinician", "offline_access"]}}, keycloak)
    assert nested.roles == {"clinician"}  # names that are no role here are ignored
    flat = person_from_claims({**CLAIMS, "roles": "viewer, Admin"}, AccessSettings())
    assert flat.roles == {"viewer", "admin"}
    assert person_from_claims(CLAIMS, AccessSettings()).roles == frozenset()


def test_the_allow_list_matches_subject_issuer_and_subject_or_email() -> None:
    settings = AccessSettings.from_mapping({"roles": {"clinician": ["ada@clinic.example"],
                                                      "admin": [f"{ISSUER}|f3c1-77"], "viewer": ["someone-else"]}})
    person = person_from_claims(CLAIMS, settings)
    assert person.roles == {"clinician", "admin"}
    assert (person.name, person.issuer, person.subject) == ("Dr Ada Example", ISSUER, "f3c1-77")
    assert person.authenticated


@pytest.mark.parametrize("verified", [False, "false", None, "yes", 1])
def test_an_unverified_email_matches_no_allow_list_entry(verified) -> None:
    # Before the fix the e-mail matched whatever email_verified said: anyone who could register a
    # clinician's address at the provider became a clinician.
    settings = AccessSettings.from_mapping({"roles": {"clinician": ["ada@clinic.example"]}})
    claims = {**CLAIMS, "sub": "intruder-1"}
    if verified is None:
        del claims["email_verified"]
    else:
        claims["email_verified"] = verified
    person = person_from_claims(claims, settings)
    assert person.roles == frozenset()
    assert not person.may("read")
    assert not person.may("review")
    assert person_from_claims({**claims, "email_verified": "TRUE"}, settings).roles == {"clinician"}


def test_permissions_follow_roles() -> None:
    viewer = Person("V", ISSUER, "v", frozenset({"viewer"}))
    clinician = Person("C", ISSUER, "c", frozenset({"clinician"}))
    admin = Person("A", ISSUER, "a", frozenset({"admin"}))
    assert [p.may("read") for p in (viewer, clinician, admin)] == [True, True, True]
    assert [p.may("review") for p in (viewer, clinician, admin)] == [False, True, False]
    assert [p.may("manage_models") for p in (viewer, clinician, admin)] == [False, False, True]
    assert not Person("N", ISSUER, "n", frozenset()).may("read")
    with pytest.raises(ValueError, match="unknown action"):
        viewer.may("delete")


def test_the_records_name_the_signed_in_identity() -> None:
    person = person_from_claims(CLAIMS, AccessSettings())
    who = identity(person)
    assert (who.issuer, who.subject, who.name, who.role) == (ISSUER, "f3c1-77", "Dr Ada Example", None)
    assert who.label == f"Dr Ada Example <{ISSUER}|f3c1-77>"
    # A long display name is shortened, never the identity; angle brackets cannot forge one.
    long = identity(Person("Dr <x|y> " + "A" * 200, ISSUER, "f3c1-77", frozenset({"clinician"})))
    assert len(long.name) == 128
    assert long.role == "clinician"
    assert long.label.endswith(f" <{ISSUER}|f3c1-77>")
    assert long.label.startswith("Dr (x|y) AAA")


def test_without_sign_in_the_typed_name_is_marked_unauthenticated() -> None:
    person = local_person("  Dr   Bea  ")
    assert not person.authenticated
    assert person.may("review")
    assert person.may("manage_models")
    who = identity(person)
    assert (who.authenticated, who.name, who.label) == (False, "Dr Bea (unauthenticated)", "Dr Bea (unauthenticated)")
    assert identity(local_person("")).label == "unnamed user (unauthenticated)"
    assert len(identity(local_person("B" * 300)).name) == 128
    with pytest.raises(TypeError):
        local_person(None)


@pytest.mark.parametrize(("address", "local"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("unix:///run/app.sock", True), ("0.0.0.0", False), ("::", False), ("192.168.1.10", False),
    ("clinic.example.org", False), (None, False), ("", False),
])
def test_local_addresses(address, local) -> None:
    assert is_local_address(address) is local


def test_serving_beyond_this_computer_needs_sign_in_or_a_deliberate_override() -> None:
    refusal = bind_refusal("0.0.0.0", auth_configured=False, allow_no_auth=False)
    assert refusal is not None
    assert "0.0.0.0" in refusal
    assert "CATARACT_CAM_ALLOW_NO_AUTH=1" in refusal
    assert bind_refusal(None, auth_configured=False, allow_no_auth=False) is not None
    assert bind_refusal("0.0.0.0", auth_configured=False, allow_no_auth=True) is None
    assert bind_refusal("0.0.0.0", auth_configured=True, allow_no_auth=False) is None
    assert bind_refusal("127.0.0.1", auth_configured=False, allow_no_auth=False) is None


def test_bad_settings_and_claims_are_refused_with_the_right_error() -> None:
    with pytest.raises(ValueError, match="surgeon"):
        AccessSettings.from_mapping({"roles": {"surgeon": ["x"]}})
    with pytest.raises(TypeError, match="list"):
        AccessSettings.from_mapping({"roles": {"viewer": "x"}})
    with pytest.raises(TypeError):
        AccessSettings.from_mapping({"role_claim": 3})
    with pytest.raises(ValueError, match="claim"):
        AccessSettings.from_mapping({"role_claim": " "})
    with pytest.raises(ValueError, match="issuer"):
        person_from_claims({"sub": "x"}, AccessSettings())
    with pytest.raises(TypeError):
        person_from_claims(CLAIMS, {})  # type: ignore[arg-type]


def test_the_example_secrets_file_is_valid() -> None:
    import tomllib

    from tests.support import ROOT

    example = tomllib.loads((ROOT / ".streamlit" / "secrets.example.toml").read_text())
    assert set(example["auth"]) == {"redirect_uri", "cookie_secret", "client_id", "client_secret",
                                    "server_metadata_url"}
    settings = AccessSettings.from_mapping(example["access"])
    assert settings.role_claim == "roles"
    person = person_from_claims({"iss": ISSUER, "sub": "x1", "email": "Ada.Lovelace@clinic.example",
                                 "email_verified": True}, settings)
    assert person.roles == {"clinician"}
    by_subject = person_from_claims({"iss": "https://id.clinic.example/realms/clinic",
                                     "sub": "2F6C1D0E-7b1a-4c55-9e0d-3a8f5b7c9d21"}, settings)
    assert by_subject.roles == {"clinician"}
