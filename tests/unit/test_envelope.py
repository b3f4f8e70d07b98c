"""parse_envelope (fact sheet §1.1): data out of a success, typed errors out of everything else. Whatever
the bytes, it returns or raises an ObshellError, never anything else."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obstop.obshell import ObshellApiError, ObshellError, ObshellProtocolError, parse_envelope
from obstop.obshell.client import envelope_time


def _env(**fields: Any) -> bytes:
    base: dict[str, Any] = {"successful": True, "timestamp": "2025-06-01T10:00:00+08:00", "duration": 1}
    base.update(fields)
    return json.dumps(base).encode()


def test_success_returns_data() -> None:
    assert parse_envelope(200, _env(status=200, traceId="t", data={"a": 1})) == {"a": 1}
    assert parse_envelope(200, _env(status=200, data={"contents": [1]})) == {"contents": [1]}


def test_success_without_data_returns_none() -> None:
    assert parse_envelope(200, _env(status=200)) is None


def test_auth_error_keeps_code_err_code_message_and_trace() -> None:
    error = {"code": 10008, "errCode": "Security.Authentication.Expired", "message": "Unauthorized: expired"}
    with pytest.raises(ObshellApiError) as caught:
        parse_envelope(401, _env(successful=False, status=401, traceId="abc", error=error))
    exc = caught.value
    assert (exc.status, exc.code, exc.err_code, exc.message, exc.trace_id) == (
        401,
        10008,
        "Security.Authentication.Expired",
        "Unauthorized: expired",
        "abc",
    )
    assert exc.is_unauthorized and not exc.is_decrypt_failure and not exc.transient


def test_old_decrypt_code_is_recognised() -> None:
    with pytest.raises(ObshellApiError) as caught:
        parse_envelope(401, _env(successful=False, error={"code": 1, "message": "decrypt"}))
    assert caught.value.is_decrypt_failure


def test_unsuccessful_with_200_is_an_error() -> None:
    with pytest.raises(ObshellApiError) as caught:
        parse_envelope(200, _env(successful=False, error={"errCode": "X", "message": "m"}))
    assert caught.value.status == 500 and caught.value.transient


@pytest.mark.parametrize(
    ("status", "raw", "expected"),
    [
        (200, b"", ObshellProtocolError),
        (200, b"<html>proxy</html>", ObshellProtocolError),
        (200, b'{"successful": "yes"}', ObshellProtocolError),
        (200, b"[1, 2]", ObshellProtocolError),
        (200, _env(data={"a": 1})[:-5], ObshellProtocolError),  # truncated
        (502, b"<html>Bad Gateway</html>", ObshellApiError),
        (500, _env(successful=False, error="boom"), ObshellApiError),
        (400, _env(successful=False, error={"code": True, "errCode": 5, "message": None}), ObshellApiError),
        (200, b"\xff\xfe\x00", ObshellProtocolError),
        (200, b"[" * 100_000, ObshellProtocolError),  # nesting deep enough to exhaust the recursion limit
        (503, b'{"successful": false, "error": ' * 50_000, ObshellApiError),
    ],
)
def test_malformed_responses_are_typed_errors(status: int, raw: bytes, expected: type[ObshellError]) -> None:
    with pytest.raises(expected) as caught:
        parse_envelope(status, raw)
    if isinstance(caught.value, ObshellApiError):
        assert caught.value.status == status
        assert caught.value.err_code == "" or isinstance(caught.value.err_code, str)
        assert caught.value.code == 0  # a bool or missing code is not a code


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "successful": json_values,
        "status": json_values,
        "traceId": json_values,
        "data": json_values,
        "error": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {}, optional={"code": json_values, "errCode": json_values, "message": json_values}
            ),
        ),
    },
)


@settings(deadline=None, max_examples=400)
@given(status=st.integers(min_value=100, max_value=599), body=envelope_like, cut=st.integers(min_value=0))
def test_any_envelope_like_body_gives_data_or_a_typed_error(
    status: int, body: dict[str, Any], cut: int
) -> None:
    raw = json.dumps(body).encode()
    for candidate in (raw, raw[: cut % (len(raw) + 1)]):
        try:
            parse_envelope(status, candidate)
        except ObshellApiError as exc:
            assert (
                isinstance(exc.message, str) and isinstance(exc.err_code, str) and isinstance(exc.code, int)
            )
            assert exc.status >= 400
        except ObshellError:
            pass


@settings(deadline=None, max_examples=300)
@given(status=st.integers(min_value=100, max_value=599), raw=st.binary(max_size=200))
def test_any_bytes_give_data_or_a_typed_error(status: int, raw: bytes) -> None:
    with contextlib.suppress(ObshellError):
        parse_envelope(status, raw)


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"timestamp": 5}', b"", b'{"timestamp": "yesterday"}'])
def test_envelope_time_is_none_for_anything_but_a_timestamp(raw: bytes) -> None:
    assert envelope_time(raw) is None


def test_envelope_time_reads_go_nanoseconds() -> None:
    stamp = envelope_time(b'{"timestamp": "2025-06-01T10:00:00.123456789+08:00"}')
    assert stamp is not None and stamp.microsecond == 123456 and stamp.utcoffset() is not None
