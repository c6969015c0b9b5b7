"""Control API routes of the overlay: peers, lookups and the DHT.

DHT keys are 160-bit. An operator names a key by text, which is hashed with
SHA-1 (:func:`dht_key`), or gives the 40 hex digits of a raw key. Values are
bytes; answers carry them as text when they are UTF-8 and always as hex.

    GET  /api/v1/overlay      node ID, role, peers known, counters
    GET  /api/v1/peers        the routing table, closest first
    POST /api/v1/lookup       {"node_id": HEX40} -> the node if alive, the k closest
    GET  /api/v1/dht          ?key=TEXT | ?key_hex=HEX40 -> values
    POST /api/v1/dht          {"key"|"key_hex", "value"|"value_hex", "ttl"?} -> copies stored
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from dnaagent.control.api import ApiError, JsonApi

if TYPE_CHECKING:
    from dnaagent.service import AgentService

MAX_VALUE = 2048


def dht_key(text: str) -> bytes:
    """The 160-bit DHT key of a text name (SHA-1 of its UTF-8 bytes)."""
    return hashlib.sha1(text.encode("utf-8")).digest()


def _hex20(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ApiError(400, f"{what} must be 40 hex digits")
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise ApiError(400, f"{what} must be 40 hex digits, not {text!r}") from None
    if len(raw) != 20:
        raise ApiError(400, f"{what} must be 40 hex digits (160 bits), not {len(raw) * 2}")
    return raw


def _key_of(data: Mapping[str, Any]) -> tuple[bytes, str]:
    if ("key" in data) == ("key_hex" in data):
        raise ApiError(400, "give exactly one of 'key' (text) or 'key_hex' (40 hex digits)")
    if "key_hex" in data:
        raw = _hex20(data["key_hex"], "key_hex")
        return raw, raw.hex()
    text = data["key"]
    if not isinstance(text, str) or not text or len(text) > 1024:
        raise ApiError(400, "'key' must be a non-empty text of at most 1024 characters")
    return dht_key(text), text


def _value_json(value: bytes) -> dict[str, Any]:
    try:
        text: str | None = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"text": text, "hex": value.hex(), "size": len(value)}


def install_overlay_routes(api: JsonApi, agent: AgentService) -> None:
    """Serve the overlay routes of ``agent`` (503 while the overlay is off)."""

    def node() -> Any:
        if agent.overlay is None:
            raise ApiError(503, "the overlay is off ([overlay] enabled = false)")
        return agent.overlay

    def overview(args: Mapping[str, str], body: Any) -> Any:
        n = node()
        assert agent.overlay_service is not None
        return {**agent.overlay_service.status(), "counters": dict(n.counters)}

    def peers(args: Mapping[str, str], body: Any) -> Any:
        return {"node_id": node().node_id.hex(), "peers": node().peers()}

    @defer.inlineCallbacks
    def lookup(args: Mapping[str, str], body: Any) -> Any:
        if not isinstance(body, dict):
            raise ApiError(400, 'body must be {"node_id": "40 hex digits"}')
        target = _hex20(body.get("node_id"), "node_id")
        n = node()
        start = agent.reactor.seconds()
        found = yield n.find(target)
        closest = yield n.lookup(target)
        now = agent.reactor.seconds()
        return {
            "node_id": target.hex(),
            "found": found.as_dict(now) if found is not None else None,
            "closest": [c.as_dict(now) for c in closest],
            "elapsed_ms": round((now - start) * 1000, 1),
        }

    @defer.inlineCallbacks
    def dht_get(args: Mapping[str, str], body: Any) -> Any:
        raw, name = _key_of(args)
        values = yield node().get(raw)
        return {"key": name, "key_hex": raw.hex(), "values": [_value_json(v) for v in values]}

    @defer.inlineCallbacks
    def dht_put(args: Mapping[str, str], body: Any) -> Any:
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        raw, name = _key_of(body)
        if ("value" in body) == ("value_hex" in body):
            raise ApiError(400, "give exactly one of 'value' (text) or 'value_hex'")
        if "value_hex" in body:
            try:
                value = bytes.fromhex(str(body["value_hex"]))
            except ValueError:
                raise ApiError(400, "'value_hex' must be hex digits") from None
        else:
            if not isinstance(body["value"], str):
                raise ApiError(400, "'value' must be text")
            value = body["value"].encode("utf-8")
        if not value or len(value) > MAX_VALUE:
            raise ApiError(400, f"a value must have 1 to {MAX_VALUE} bytes, not {len(value)}")
        ttl = body.get("ttl")
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 1 <= ttl <= 7 * 86400
        ):
            raise ApiError(400, "'ttl' must be seconds from 1 to 604800")
        stored = yield node().put(raw, value, ttl)
        return {"key": name, "key_hex": raw.hex(), "stored_on": stored}

    api.route("GET", "/api/v1/overlay", overview)
    api.route("GET", "/api/v1/peers", peers)
    api.route("POST", "/api/v1/lookup", lookup)
    api.route("GET", "/api/v1/dht", dht_get)
    api.route("POST", "/api/v1/dht", dht_put)
