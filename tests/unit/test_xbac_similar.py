"""Cross-group predictions (dnaagent.xbac.similar): wire, comparison, combination, handler."""

from __future__ import annotations

import math

import msgpack
import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from dnaagent.overlay.contact import Peer
from dnaagent.xbac import similar
from dnaagent.xbac.node import XbacNode, XbacProtocolError
from dnaagent.xbac.params import XbacParams
from dnaagent.xbac.predictor import Prediction, PredictorParams, XbacPredictor
from dnaagent.xbac.similar import Answer, SimilarError

P = PredictorParams()


def answer(value: float, offset: float, spread: float, samples: int = 10) -> Answer:
    """An answer with a point prediction."""
    return Answer(Prediction(value, value, value, "series", 1, samples), offset, spread, 5)


def test_request_round_trip_and_size_bound() -> None:
    """A request survives msgpack; 64 long host names still fit the datagram budget."""
    body = similar.request_body("192.0.2.9", [("192.0.2.1", 0.08), ("192.0.2.2", 0.12)])
    wire = msgpack.unpackb(msgpack.packb(body, use_bin_type=True), raw=False)
    assert similar.parse_request(wire) == ("192.0.2.9", {"192.0.2.1": 0.08, "192.0.2.2": 0.12})
    big = similar.request_body("t", [("h" * 60 + f"{i:04d}", 0.1) for i in range(200)])
    assert len(big["l"]) == similar.MAX_HOSTS
    assert len(msgpack.packb(big, use_bin_type=True)) <= similar.MAX_BODY


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"t": 5, "l": []},
        {"t": "x" * 65, "l": []},
        {"t": "a", "l": {}},
        {"t": "a", "l": [["b"]]},
        {"t": "a", "l": [["b", -0.1]]},
        {"t": "a", "l": [["b", math.nan]]},
        {"t": "a", "l": [["b", math.inf]]},
        {"t": "a", "l": [["b", "0.1"]]},
        {"t": "a", "l": [["b", 0.1], ["b", 0.2]]},
        {"t": "a", "l": [["a", 0.1]]},
        {"t": "a", "l": [[f"h{i}", 0.1] for i in range(65)]},
    ],
)
def test_bad_requests_are_refused(body: object) -> None:
    """Every malformed field of a request is an error, never a crash."""
    with pytest.raises(SimilarError):
        similar.parse_request(body)


def test_answer_round_trip_and_bad_answers() -> None:
    """An answer with a basis and a "no basis" answer survive msgpack; bad ones are errors."""
    a = Answer(Prediction(0.1, 0.09, 0.12, "group", 2, 30), -0.004, 0.001, 6)
    back = similar.parse_answer(similar.answer_body(a))
    assert back is not None
    assert (back.offset, back.spread, back.common) == (-0.004, 0.001, 6)
    p = back.prediction
    assert (p.value, p.low, p.high, p.series, p.samples) == (0.1, 0.09, 0.12, 2, 30)
    assert similar.parse_answer(similar.answer_body(None, "dissimilar")) is None
    for bad in (
        None,
        {"p": [0.1, 0.1, 0.1, 1]},
        {"p": [0.1, 0.2, 0.3, 1, 1], "o": 0.0, "s": 0.0, "c": 3},  # value below its interval
        {"p": [0.1, 0.1, 0.1, 1, 1], "o": math.nan, "s": 0.0, "c": 3},
        {"p": [0.1, 0.1, 0.1, 1, 1], "o": 0.0, "s": -1.0, "c": 3},
        {"p": [0.1, 0.1, 0.1, 1, 1], "o": 0.0, "s": 0.0, "c": "3"},
    ):
        with pytest.raises(SimilarError):
            similar.parse_answer(bad)


def test_compare_is_the_predictors_similarity() -> None:
    """The wire comparison gives exactly what XbacPredictor.similarity gives for two hosts."""
    pred = XbacPredictor(P)
    mine_levels = {"r1": 0.08, "r2": 0.12, "r3": 0.15, "r4": 0.2, "r5": 0.06}
    theirs_levels = {"r1": 0.085, "r2": 0.124, "r3": 0.158, "r4": 0.203, "r6": 0.3}
    for host, levels in (("me", mine_levels), ("them", theirs_levels)):
        for r, v in levels.items():
            for k in range(8):
                pred.add_measurement(host, r, v * (1 + 0.01 * (k % 2)), float(k))
    want = pred.similarity("them", "me")
    lv_me = {r: pred.level("me", r)[0] for r in mine_levels}  # type: ignore[index]
    lv_them = {r: pred.level("them", r)[0] for r in theirs_levels}  # type: ignore[index]
    assert want is not None
    assert similar.compare(lv_them, lv_me, P) == want
    assert want[2] == 4
    assert similar.compare({"r1": 0.1, "r2": 0.2}, {"r1": 0.1, "r2": 0.2}, P) is None


def test_combine_prefers_small_spreads_and_shifts_by_the_offset() -> None:
    """Each answer counts shifted by its offset; the tightest answers are kept."""
    p = PredictorParams(max_estimates=2)
    got = similar.combine(
        [answer(0.100, 0.010, 0.001), answer(0.300, 0.0, 0.020), answer(0.104, 0.010, 0.002)],
        p,
    )
    assert got is not None and got.source == "similar"
    assert got.value in (pytest.approx(0.110), pytest.approx(0.114))
    assert got.high < 0.2  # the loose answer is not used
    assert got.series == 2 and got.samples == 20
    assert similar.combine([], p) is None
    one = Answer(Prediction(0.1, 0.09, 0.13, "series", 1, 12), -0.02, 0.0, 5)
    widened = similar.combine([one], p)
    assert widened is not None
    assert widened.value == pytest.approx(0.08)
    assert (widened.low, widened.high) == (pytest.approx(0.07), pytest.approx(0.11))


class Overlay:
    """Just what XbacNode needs to be built and to answer a local request."""

    node_id = b"\x01" * 20

    def __init__(self) -> None:
        self.handlers: dict[str, object] = {}

    def register_handler(self, name: str, fn: object) -> None:
        """Keep the handler."""
        self.handlers[name] = fn

    def put(self, key: bytes, value: bytes, ttl: float = 0.0) -> object:
        """The DHT takes the announcement."""
        return succeed(None)

    def get(self, key: bytes) -> object:
        """The DHT holds no leader records."""
        return succeed([])


def leader_node(levels: dict[str, float], target_rtt: float | None) -> tuple[XbacNode, Overlay]:
    """A running one-node group whose node measured ``levels`` (and the target)."""
    ov = Overlay()
    node = XbacNode(ov, Clock(), lambda h: succeed(0.001), XbacParams(), host_id="198.51.100.1")
    node._running = True
    node._found_group()
    hosts = dict(levels)
    if target_rtt is not None:
        hosts["192.0.2.50"] = target_rtt
    for h, v in hosts.items():
        for k in range(12):
            node.predictor.add_measurement(node.node_id, h, v, float(k))
    return node, ov


PEER = Peer(b"\x02" * 20, ("198.51.100.2", 4001), "core")
LEVELS = {f"192.0.2.{i}": 0.05 + 0.02 * i for i in range(1, 7)}


def ask(ov: Overlay, body: object) -> object:
    """Call the registered xbac.similar handler; return its (synchronous) result."""
    out: list[object] = []
    res = ov.handlers["xbac.similar"](body, PEER)  # type: ignore[operator]
    if hasattr(res, "addBoth"):
        res.addBoth(out.append)
        return out[0]
    return res


def test_handler_answers_a_similar_requester_with_its_offset() -> None:
    """Levels 5 ms above ours: our series prediction and an offset of +5 ms."""
    node, ov = leader_node(LEVELS, 0.110)
    body = {"t": "192.0.2.50", "l": [[h, v + 0.005] for h, v in LEVELS.items()]}
    a = similar.parse_answer(ask(ov, body))
    assert a is not None
    assert a.offset == pytest.approx(0.005) and a.spread == pytest.approx(0.0)
    assert a.prediction.value == pytest.approx(0.110) and a.common == len(LEVELS)
    assert node.counters["similar_served"] == 1


def test_handler_says_no_basis_when_dissimilar_or_without_experience() -> None:
    """Scattered differences, too few common hosts, or no series/cluster: "no basis"."""
    node, ov = leader_node(LEVELS, 0.110)
    scattered = [[h, v * (1 + 0.8 * (i % 2))] for i, (h, v) in enumerate(LEVELS.items())]
    assert ask(ov, {"t": "192.0.2.50", "l": scattered})["p"] is None  # type: ignore[index]
    few = [[h, v] for h, v in list(LEVELS.items())[:2]]
    assert ask(ov, {"t": "192.0.2.50", "l": few})["p"] is None  # type: ignore[index]
    same = [[h, v] for h, v in LEVELS.items()]
    assert ask(ov, {"t": "192.0.2.99", "l": same})["p"] is None  # type: ignore[index]
    assert node.counters["similar_no_basis"] == 3
    assert node.counters["similar_served"] == 0
    assert node.store.counts()["primary_c"] == 0  # no cluster made for someone else's target


def test_handler_refuses_and_counts_bad_bodies_and_floods() -> None:
    """A bad body is refused and counted in ``invalid``; beyond the rate, "busy"."""
    node, ov = leader_node(LEVELS, 0.110)
    for bad in (None, {"t": "a", "l": [["b", -1.0]]}):
        with pytest.raises(XbacProtocolError):
            ask(ov, bad)
    assert node.counters["invalid"] == 2
    body = {"t": "192.0.2.50", "l": [[h, v] for h, v in LEVELS.items()]}
    burst = int(4 * node.params.similar_rate)
    answers = [ask(ov, body) for _ in range(burst + 3)]
    assert sum(1 for a in answers if a["p"] is not None) == burst  # type: ignore[index]
    assert node.counters["refused"] == 3


def test_no_other_group_known_means_none_at_once() -> None:
    """Without another group's leader the source answers None synchronously, asking nobody."""
    node, _ = leader_node(LEVELS, None)
    out: list[object] = []
    node._similar.ask("192.0.2.50").addBoth(out.append)
    assert out == [None]
    assert node.counters["similar_requests"] == 0


def test_params_are_checked() -> None:
    """Out-of-range cross-group parameters are refused."""
    for bad in (
        {"similar_groups": -1},
        {"similar_groups": 17},
        {"similar_hosts": 0},
        {"similar_timeout": 0},
    ):
        with pytest.raises(ValueError):
            XbacParams(**bad).validate()  # type: ignore[arg-type]
    XbacParams(similar_groups=0).validate()


def test_dnactl_shows_similar_predictions_and_counters() -> None:
    """``dnactl predict rtt`` names the source; ``status`` shows the cross-group counters."""
    import io

    from dnaagent.control.dnactl import build_parser
    from dnaagent.control.predict_cli import cmd_predict

    node, _ = leader_node(LEVELS, None)
    node.counters.update(similar_requests=6, similar_answers=2, similar_predictions=2)
    status = {
        "mode": "group",
        "role": "leader",
        "group": "ab",
        "members": 1,
        "clusters": 0,
        "measurements": 0,
        "measurements_by_source": {"api": 0, "active": 0, "passive": 0, "report": 0},
        "measurements_rejected": 0,
        "predictions_answered": 2,
        "predictions_unanswered": 1,
        "quality_reports": 0,
        "active": {"method": "icmp", "tcp_port": 80, "interval": 0},
        "passive": {"running": False},
        "engine": node.status(),
    }
    rtt = {
        "target": "192.0.2.50",
        "predicted": True,
        "rtt_ms": 110.0,
        "low_ms": 105.0,
        "high_ms": 115.0,
        "basis": {"source": "similar", "series": 1, "measurements": 12},
        "elapsed_ms": 3.0,
        "time": 0,
    }

    class Client:
        """The agent's answers."""

        def get(self, path: str, **query: object) -> object:
            """The status."""
            return status

        def post(self, path: str, body: object) -> object:
            """The prediction."""
            return rtt

    for argv, want in (
        (["predict", "status"], "other groups  6 asked, 2 answers, 2 predictions; for them 0"),
        (["predict", "rtt", "192.0.2.50"], "another group that sees the network as this host"),
    ):
        out = io.StringIO()
        assert cmd_predict(Client(), build_parser().parse_args(argv), out) == 0
        assert want in out.getvalue()


def test_a_silent_leader_is_left_out_for_a_while() -> None:
    """A leader that does not answer costs one wait, then is not asked for a while."""
    from twisted.internet.defer import fail

    from dnaagent.overlay.errors import RequestTimeout
    from dnaagent.xbac.node import LeaderRecord

    node, ov = leader_node(LEVELS, None)
    sent: list[tuple[object, str]] = []

    def request(to: object, name: str, body: object, timeout: float | None = None) -> object:
        sent.append((to, name))
        return fail(RequestTimeout("no answer"))

    ov.request = request  # type: ignore[attr-defined]
    rec = LeaderRecord(b"\x07" * 20, b"\x08" * 20, "198.51.100.9", "198.51.100.9", 4001, 1.0)
    node.known_leaders[rec.node_id] = rec
    out: list[object] = []
    node._similar.ask("192.0.2.50").addBoth(out.append)
    assert out == [None] and sent == [(("198.51.100.9", 4001), "xbac.similar")]
    node._similar.ask("192.0.2.51").addBoth(out.append)
    assert out == [None, None] and len(sent) == 1  # left out: nobody to ask
    node.clock.advance(node.params.similar_negative_ttl + 1)  # type: ignore[attr-defined]
    node._similar.ask("192.0.2.52").addBoth(out.append)
    assert len(sent) == 2
    assert node.counters["similar_requests"] == 2


def test_group_levels_fill_in_members_levels_corrected_by_their_offset() -> None:
    """Hosts the node did not measure take its members' levels from the clusters it holds,
    shifted by each member's offset to the node; expired or unmapped ones are not used."""
    from dnaagent.xbac.storage import Entry

    own = {"192.0.2.1": 0.070, "192.0.2.2": 0.090}
    node, ov = leader_node(own, None)
    # A member 3 ms below this node on the hosts both measured; another 1 ms above.
    lv = {
        "192.0.2.1": {"m1": [0.067, 12, 0.0, None], "m2": [0.071, 12, 0.0, None]},
        "192.0.2.2": {"m1": [0.087, 12, 0.0, None]},
        "192.0.2.3": {"m1": [0.107, 12, 0.0, None], "m2": [0.111, 12, 0.0, None]},
        "192.0.2.4": {"m1": [0.127, 3, 0.0, None]},  # too few samples
    }
    data = {"h": list(lv), "lv": lv}
    node.store.put(Entry("c", "7", data, 0.0, 1e9))
    for h in ("192.0.2.1", "192.0.2.2"):
        node.store.put(Entry("h", h, 7, 0.0, 1e9))
    node.store.put_backup(Entry("h", "192.0.2.3", 7, 0.0, 1e9))
    node.store.put(Entry("h", "192.0.2.4", 7, 0.0, 1e9))
    node.store.put(Entry("h", "192.0.2.5", 7, 0.0, -1.0))  # expired
    hosts = [f"192.0.2.{i}" for i in range(1, 7)]
    got = node._similar.group_levels(hosts)
    assert got == pytest.approx({**own, "192.0.2.3": 0.110})
    # A request that matches through them is answered (common 3: two own, one filled in).
    node.predictor.add_measurement(node.node_id, "192.0.2.50", 0.2, 20.0)
    for k in range(12):
        node.predictor.add_measurement(node.node_id, "192.0.2.50", 0.2, 21.0 + k)
    body = {"t": "192.0.2.50", "l": [[h, got[h] + 0.002] for h in got]}
    a = similar.parse_answer(ask(ov, body))
    assert a is not None and a.common == 3 and a.offset == pytest.approx(0.002)


def test_a_node_that_measured_little_asks_with_its_groups_levels() -> None:
    """Own levels first (most measured first), then the group's from the clusters it holds."""
    from dnaagent.xbac.storage import Entry

    node, _ = leader_node({"192.0.2.1": 0.070}, None)
    for k in range(5):
        node.predictor.add_measurement(node.node_id, "192.0.2.9", 0.3, 100.0 + k)
    lv = {
        "192.0.2.1": {"m1": [0.068, 12, 0.0, None]},
        "192.0.2.2": {"m1": [0.088, 12, 0.0, None]},
        "192.0.2.3": {"m1": [0.108, 12, 0.0, None]},
        "192.0.2.50": {"m1": [0.2, 12, 0.0, None]},
    }
    node.store.put(Entry("c", "7", {"h": list(lv), "lv": lv}, 0.0, 1e9))
    for h in lv:
        node.store.put(Entry("h", h, 7, 0.0, 1e9))
    got = node._similar.levels(exclude="192.0.2.50")
    assert [h for h, _ in got] == ["192.0.2.1", "192.0.2.9", "192.0.2.2", "192.0.2.3"]
    assert dict(got)["192.0.2.3"] == pytest.approx(0.110)  # the member is 2 ms below
    node.params = XbacParams(similar_hosts=2)
    assert [h for h, _ in node._similar.levels(exclude="x")] == ["192.0.2.1", "192.0.2.9"]
