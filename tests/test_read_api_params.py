"""The read API's query parameters and path id: strict, and never a 5xx whatever comes in."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN, fixture, post

LIST = "/api/v1/incidents"


@pytest.fixture
def seeded(client: FlaskClient) -> str:
    """One open incident, so the list and the detail view have something to show."""
    (incident_id,) = post(client, fixture("firing-two-alerts.json")).json["incidents"]
    return str(incident_id)


def _assert_bad(response: object, field: str) -> None:
    assert response.status_code == 400, response.get_data()  # type: ignore[attr-defined]
    error = response.json["error"]  # type: ignore[attr-defined]
    assert error["code"] == "bad_request"
    assert error["details"]["field"] == field


def test_a_limit_of_non_ascii_digits_is_a_400_naming_the_field(client: FlaskClient) -> None:
    _assert_bad(client.get(f"{LIST}?limit=%C2%B2", headers=ADMIN), "limit")


@pytest.mark.parametrize("limit", ["+5", "-1", "0", "1001", " 5", "5 ", "1e2", "٣", "9" * 5000])
def test_a_limit_that_is_not_1_to_1000_in_ascii_digits_is_a_400(
    client: FlaskClient, limit: str
) -> None:
    _assert_bad(client.get(LIST, query_string={"limit": limit}, headers=ADMIN), "limit")


def test_a_limit_within_bounds_limits_the_list(client: FlaskClient, seeded: str) -> None:
    response = client.get(f"{LIST}?limit=1", headers=ADMIN)
    assert response.status_code == 200
    assert [i["id"] for i in response.json["incidents"]] == [seeded]


@pytest.mark.parametrize("status", ["", "OPEN", "open ", "closed", "\uff4fpen"])
def test_a_status_other_than_open_or_resolved_is_a_400(client: FlaskClient, status: str) -> None:
    _assert_bad(client.get(LIST, query_string={"status": status}, headers=ADMIN), "status")


def test_a_parameter_given_twice_is_a_400_naming_it(client: FlaskClient) -> None:
    _assert_bad(client.get(f"{LIST}?status=open&status=resolved", headers=ADMIN), "status")


def test_an_unknown_parameter_is_a_400_naming_it(client: FlaskClient) -> None:
    _assert_bad(client.get(f"{LIST}?limt=5", headers=ADMIN), "limt")


def test_a_parameter_on_the_detail_view_is_a_400_naming_it(
    client: FlaskClient, seeded: str
) -> None:
    _assert_bad(client.get(f"{LIST}/{seeded}?status=open", headers=ADMIN), "status")


@pytest.mark.parametrize(
    "raw_id",
    ["a" * 10_000, "%00", "abc%0Adef", "%FF%FE", "%ED%B2%80", "x%C0%AF", "..", "a b"],
)
def test_a_path_id_that_cannot_be_an_incident_id_is_a_400_naming_it(
    client: FlaskClient, raw_id: str
) -> None:
    _assert_bad(client.get(f"{LIST}/{raw_id}", headers=ADMIN), "incident_id")


def test_a_well_formed_unknown_id_is_a_404(client: FlaskClient) -> None:
    response = client.get(f"{LIST}/0123456789ab-nope", headers=ADMIN)
    assert response.status_code == 404
    assert response.json["error"]["details"]["field"] == "incident_id"


# What str.isdigit() takes beyond 0-9: "٣" (int() takes it), "²" and "⓵" (int() does not).
_unicode_digits = st.sampled_from([c for c in map(chr, range(0x80, 0x20000)) if c.isdigit()])
_values = (
    st.sampled_from(["open", "resolved", "1", "1000", "100", "+1", "0", "00001", ""])
    | st.integers(min_value=-(10**30), max_value=10**30).map(str)
    | st.text(_unicode_digits | st.sampled_from("0123456789"), min_size=1, max_size=3)
    | st.text(max_size=30)
)
_params = st.tuples(
    st.none() | _values.map(lambda v: [("status", v)]),
    st.none()
    | (st.text(_unicode_digits, min_size=1, max_size=2) | _values).map(lambda v: [("limit", v)]),
    st.lists(
        st.tuples(st.sampled_from(["status", "limit"]) | st.text(max_size=8), _values), max_size=2
    ),
).map(lambda parts: [p for part in parts if part for p in part])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(params=_params)
def test_no_list_query_is_a_5xx(
    client: FlaskClient, seeded: str, params: list[tuple[str, str]]
) -> None:
    query = urlencode(params)
    response = client.get(f"{LIST}?{query}", headers=ADMIN)
    assert response.status_code in (200, 400), (query, response.get_data())
    if response.status_code == 400:
        assert response.json["error"]["details"]["field"] in {k for k, _ in params}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.binary(min_size=1, max_size=300) | st.text(min_size=1, max_size=3000).map(str.encode),
    query=st.sampled_from(["", "?status=open", "?limit=%C2%B2"]),
)
def test_no_detail_request_is_a_5xx(
    client: FlaskClient, seeded: str, raw: bytes, query: str
) -> None:
    response = client.get(f"{LIST}/{quote(raw, safe='')}{query}", headers=ADMIN)
    # 308: an encoded "/" decodes into "//", which the router merges (werkzeug's doing).
    assert response.status_code in (308, 400, 404), (raw, response.get_data())
    if response.status_code != 308:
        assert response.json["error"]["code"] in ("bad_request", "not_found")
