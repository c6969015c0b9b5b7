"""``dnactl predict``: parsing, output and exit status, against a scripted client."""

from __future__ import annotations

import io

import pytest

from dnaagent.control.dnactl import build_parser
from dnaagent.control.predict_cli import PredictUsageError, cmd_predict, resolve


class Client:
    """Answers POSTs and GETs from a script and records them."""

    def __init__(self, answers: dict) -> None:
        self.answers = answers
        self.calls: list[tuple[str, object]] = []

    def post(self, path: str, body: object) -> object:
        """One scripted POST."""
        self.calls.append((path, body))
        return self.answers[path]

    def get(self, path: str, **query: object) -> object:
        """One scripted GET."""
        self.calls.append((path, None))
        return self.answers[path]


def run(argv: list[str], answers: dict) -> tuple[int, str, Client]:
    """Parse like dnactl and run the predict action."""
    args = build_parser().parse_args(argv)
    client = Client(answers)
    out = io.StringIO()
    return cmd_predict(client, args, out), out.getvalue(), client


PREDICTED = {
    "target": "192.0.2.7",
    "predicted": True,
    "rtt_ms": 21.0,
    "low_ms": 20.0,
    "high_ms": 22.5,
    "basis": {"source": "group", "series": 3, "measurements": 120},
    "elapsed_ms": 0.4,
    "time": 0,
}


def test_rtt_prints_value_interval_and_basis() -> None:
    """A prediction: value, interval, what it rests on; exit 0."""
    code, out, client = run(
        ["predict", "rtt", "192.0.2.7"], {"/api/v1/xbac/predict/rtt": PREDICTED}
    )
    assert code == 0
    assert client.calls == [("/api/v1/xbac/predict/rtt", {"host": "192.0.2.7"})]
    assert "192.0.2.7: 21.0 ms (interval 20.0-22.5 ms)" in out
    assert "members of this host's group: 3 series, 120 measurements" in out


def test_no_prediction_is_exit_1_with_a_sentence() -> None:
    """No basis: the reason and how to give it one; exit 1 (also with --json)."""
    answer = {
        "target": "192.0.2.8",
        "predicted": False,
        "reason": "no prediction possible for 192.0.2.8: ...",
    }
    code, out, _ = run(["predict", "rtt", "192.0.2.8"], {"/api/v1/xbac/predict/rtt": answer})
    assert code == 1
    assert out.startswith("no prediction possible for 192.0.2.8")
    assert "dnactl predict measure 192.0.2.8" in out
    code, out, _ = run(
        ["predict", "rtt", "192.0.2.8", "--json"], {"/api/v1/xbac/predict/rtt": answer}
    )
    assert code == 1 and '"predicted": false' in out


def test_add_and_report_bodies() -> None:
    """add sends the values and the interval; report the two values."""
    code, out, client = run(
        ["predict", "add", "[2001:db8::1]", "10", "11.5", "--interval", "30"],
        {"/api/v1/xbac/measurements": {"host": "2001:db8::1", "given": 2, "kept": 2}},
    )
    assert code == 0 and "2 of 2 measurements recorded" in out
    assert client.calls[0][1] == {
        "host": "2001:db8::1",
        "rtts_ms": [10.0, 11.5],
        "interval_s": 30.0,
    }
    code, out, client = run(
        ["predict", "report", "192.0.2.7", "--predicted", "10", "--measured", "8"],
        {"/api/v1/xbac/quality": {"target": "192.0.2.7", "relative_error": 0.25}},
    )
    assert code == 0 and "relative error 25.0 %" in out


def test_measure_without_answer_is_exit_1() -> None:
    """A target that did not answer: exit 1 with the method and the reason."""
    answer = {
        "target": "192.0.2.7",
        "method": "tcp",
        "port": 443,
        "rtt_ms": None,
        "error": "timeout",
    }
    code, out, _ = run(["predict", "measure", "192.0.2.7"], {"/api/v1/xbac/measure": answer})
    assert code == 1 and "did not answer (TCP port 443: timeout)" in out


def test_resolve() -> None:
    """Literals pass unchanged (brackets and scope removed); a bad name is a usage error."""
    assert resolve("[2001:DB8::1]") == "2001:db8::1"
    assert resolve("192.0.2.1") == "192.0.2.1"
    with pytest.raises(PredictUsageError, match="cannot resolve"):
        resolve("no such host..invalid")


def test_predict_needs_an_action(capsys) -> None:
    """``dnactl predict`` alone is a usage error."""
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["predict"])
    assert info.value.code == 2
