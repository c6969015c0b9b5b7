"""The [snmp] section: user strings, checks and defaults."""

from __future__ import annotations

import dataclasses

import pytest

from dnaagent.snmp.settings import SnmpSection, parse_user


def check(name: str, value: object) -> str | None:
    """Run the check of one key of SnmpSection."""
    field = {f.name: f for f in dataclasses.fields(SnmpSection)}[name]
    return field.metadata["check"](value)


def test_defaults_are_loopback_v2c_public() -> None:
    """Out of the box: 127.0.0.1:1161, community public, no SNMPv3 user."""
    s = SnmpSection()
    assert (s.enabled, s.listen, s.port, s.community, s.users) == (
        True,
        ["127.0.0.1"],
        1161,
        "public",
        [],
    )


def test_user_strings() -> None:
    """A user string gives protocols and access; keys never show in repr."""
    u = parse_user("nms:sha-256:auth-secret:aes:priv-secret:rw")
    assert (u.name, u.auth, u.priv, u.writable) == ("nms", "SHA-256", "AES", True)
    assert "secret" not in repr(u)
    assert parse_user("ops:SHA-512:12345678:AES-256:87654321").writable is False


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("nms:SHA-256:authkey1", "5 or 6 fields"),
        ("nms:MD5:authkey12:AES:privkey1", "authentication"),
        ("nms:SHA-256:authkey12:DES:privkey1", "privacy"),
        ("nms:SHA-256:short:AES:privkey12", "at least 8"),
        ("nms:SHA-256:authkey12:AES:privkey12:admin", "ro or rw"),
        ("bad name:SHA-256:authkey12:AES:privkey12", "user name"),
    ],
)
def test_bad_users_are_refused(text: str, words: str) -> None:
    """Each mistake is named."""
    with pytest.raises(ValueError, match=words):
        parse_user(text)
    assert words in (check("users", [text]) or "")


def test_other_checks() -> None:
    """Duplicates, empty listen lists, bad addresses, engine IDs and communities are refused."""
    user = "nms:SHA-256:authkey12:AES:privkey12"
    assert "twice" in (check("users", [user, user]) or "")
    assert check("listen", []) is not None
    assert check("listen", ["127.0.0.1", "::1"]) is None
    assert check("listen", ["localhost"]) is not None
    assert check("engine_id", "") is None
    assert check("engine_id", "80001f8880aabbccdd") is None
    assert check("engine_id", "abc") is not None
    assert check("community", "") is None
    assert check("community", "a:b") is not None
    assert check("community", "x" * 33) is not None
