"""Where a request's key is found: Authorization: Bearer, xi-api-key, a socket's token."""

from __future__ import annotations

from starlette.types import Scope

from access.credentials import presented_key, take_socket_token


def _scope(*headers: tuple[bytes, bytes], query: bytes = b"") -> Scope:
    return {"type": "websocket", "headers": list(headers), "query_string": query}


def test_bearer_first_then_xi_api_key() -> None:
    assert presented_key(_scope((b"Authorization", b"Bearer  sk-1 "))) == "sk-1"
    assert presented_key(_scope((b"authorization", b"bearer sk-1"))) == "sk-1"
    assert presented_key(_scope((b"xi-api-key", b"el-1"))) == "el-1"
    both = _scope((b"xi-api-key", b"el-1"), (b"authorization", b"Bearer sk-1"))
    assert presented_key(both) == "sk-1"
    assert presented_key(_scope()) is None


def test_other_schemes_and_empty_values_are_no_key() -> None:
    assert presented_key(_scope((b"authorization", b"Basic dXNlcjpwYXNz"))) is None
    assert presented_key(_scope((b"authorization", b"Bearer "))) is None
    assert presented_key(_scope((b"xi-api-key", b""))) is None


def test_a_socket_token_is_taken_out_of_the_query_and_the_rest_kept_as_sent() -> None:
    query = b"output_format=pcm_24000&single_use_token=abc-_1&model_id=a%20b"
    token, scope = take_socket_token(_scope(query=query))
    assert token == "abc-_1"
    assert scope["query_string"] == b"output_format=pcm_24000&model_id=a%20b"
    assert take_socket_token(_scope(query=b"single_use_token="))[0] is None
    untouched = _scope(query=b"output_format=mp3_44100_128")
    assert take_socket_token(untouched) == (None, untouched)
