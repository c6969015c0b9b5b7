"""Trap sink and inform target strings, and the [notifications] section checks."""

from __future__ import annotations

import dataclasses

import pytest

from dnaagent.snmp.notify.settings import NotifySection, event_kinds
from dnaagent.snmp.notify.targets import (
    INFORM,
    TRAP,
    TargetError,
    check_targets,
    parse_target,
    parse_targets,
)


def test_v2c_ipv4_with_port() -> None:
    """A v2c target names community, address and port."""
    t = parse_target("v2c:public@192.0.2.5:1162", TRAP)
    assert (t.mode, t.version, t.community, t.host, t.port) == (
        "trap",
        "v2c",
        "public",
        "192.0.2.5",
        1162,
    )
    assert t.family == 4
    assert t.key == "trap v2c community@192.0.2.5:1162"


def test_default_port_is_162() -> None:
    """Without a port the standard notification port is used."""
    assert parse_target("v2c:public@198.51.100.7", INFORM).port == 162
    assert parse_target("v2c:public@[2001:db8::5]", INFORM).port == 162


def test_v3_ipv6() -> None:
    """A v3 target carries user, SHA-2 and AES settings; IPv6 is bracketed."""
    t = parse_target("v3:ops:sha-256:authkey1:aes:privkey1@[2001:DB8::5]:162", INFORM)
    assert t.version == "v3"
    assert (t.user, t.auth_protocol, t.auth_key, t.priv_protocol, t.priv_key) == (
        "ops",
        "SHA-256",
        "authkey1",
        "AES",
        "privkey1",
    )
    assert t.host == "2001:db8::5"
    assert t.family == 6
    assert t.key == "inform v3 ops@[2001:db8::5]:162"


def test_percent_encoded_secrets() -> None:
    """':', '@' and ',' inside secrets are written percent-encoded."""
    t = parse_target("v3:a%40b:SHA-512:pa%3Ass%2Cword:AES-256:x%25yzabcdef@127.0.0.1", TRAP)
    assert (t.user, t.auth_key, t.priv_key) == ("a@b", "pa:ss,word", "x%yzabcdef")
    assert parse_target("v2c:pub%3Alic@127.0.0.1", TRAP).community == "pub:lic"


def test_secrets_are_not_in_repr() -> None:
    """Keys and communities do not show up when a target is printed or logged."""
    t = parse_target("v3:ops:SHA-256:sekrit-auth:AES:sekrit-priv@127.0.0.1", TRAP)
    assert "sekrit" not in repr(t) and "sekrit" not in str(t)
    assert "hush" not in repr(parse_target("v2c:hush@127.0.0.1", TRAP))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("public@192.0.2.5", "starts with 'v2c:' or 'v3:'"),
        ("v1:public@192.0.2.5", "starts with 'v2c:' or 'v3:'"),
        ("v2c:public", "missing '@HOST[:PORT]'"),
        ("v2c:@192.0.2.5", "community is empty"),
        ("v2c:public@2001:db8::5", "brackets"),
        ("v2c:public@[192.0.2.5]", "without brackets"),
        ("v2c:public@nms.example.org", "not an IPv4 or IPv6 address"),
        ("v2c:public@192.0.2.5:0", "port 0"),
        ("v2c:public@192.0.2.5:70000", "port 70000"),
        ("v2c:pub:lic@192.0.2.5", "%3A"),
        ("v3:ops:SHA-256:authkey1@192.0.2.5", "expected 5"),
        ("v3:ops:MD5:authkey1:AES:privkey1@192.0.2.5", "authentication 'MD5'"),
        ("v3:ops:SHA-256:authkey1:DES:privkey1@192.0.2.5", "privacy 'DES'"),
        ("v3:ops:SHA-256:short:AES:privkey1@192.0.2.5", "authentication key is shorter"),
        ("v3::SHA-256:authkey1:AES:privkey1@192.0.2.5", "user name is empty"),
    ],
)
def test_bad_targets_say_why(text: str, problem: str) -> None:
    """Each malformed target is refused with a sentence naming the problem."""
    with pytest.raises(TargetError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_target(text, TRAP)


def test_list_error_names_entry_without_secrets() -> None:
    """A bad entry of a list is named by position, its secrets hidden."""
    good = "v2c:public@192.0.2.5"
    bad = "v3:ops:SHA-256:topsecret1:AES:short@[2001:db8::5]:162"
    with pytest.raises(TargetError) as e:
        parse_targets([good, bad], INFORM)
    message = str(e.value)
    assert message.startswith("entry 2 (v3:ops:SHA-256:***:AES:***@[2001:db8::5]:162)")
    assert "privacy key is shorter" in message
    assert "topsecret1" not in message and "short@" not in message


def test_duplicate_targets_are_refused() -> None:
    """The same receiver twice in one list is a configuration error."""
    with pytest.raises(TargetError, match="listed twice"):
        parse_targets(["v2c:a@192.0.2.5", "v2c:b@192.0.2.5:162"], TRAP)


def test_section_defaults_send_nothing() -> None:
    """Built-in defaults configure no receiver, and every default passes its check."""
    section = NotifySection()
    assert section.trap_sinks == [] and section.inform_targets == []
    for f in dataclasses.fields(NotifySection):
        check = f.metadata["check"]
        if check is not None:
            assert check(getattr(section, f.name)) is None, f.name


def test_section_checks() -> None:
    """The configuration checks accept good values and name bad ones."""
    assert check_targets(TRAP)(["v2c:public@127.0.0.1:1162"]) is None
    assert "entry 1" in (check_targets(INFORM)(["nonsense"]) or "")
    assert event_kinds(["test-failed", "fault-localized"]) is None
    assert "'test-exploded'" in (event_kinds(["test-exploded"]) or "")
