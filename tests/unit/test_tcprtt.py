"""TCP connect RTT through the reactor, against loopback listeners only."""

from __future__ import annotations

import errno
import socket

import pytest
import pytest_twisted
from twisted.internet import task

from dnaagent.measure.tcprtt import TcpRtt, TcpRttResult


@pytest_twisted.inlineCallbacks
def test_open_port_answers_with_an_rtt() -> None:
    """A listening loopback port: a reply with a positive RTT, not refused."""
    from twisted.internet import reactor

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        port = listener.getsockname()[1]
        result = yield TcpRtt(reactor).measure("127.0.0.1", port, 5.0)
    finally:
        listener.close()
    assert result.reply and not result.refused
    assert result.rtt_ms is not None and 0 < result.rtt_ms < 5000


@pytest_twisted.inlineCallbacks
def test_refused_port_is_an_answer_too() -> None:
    """A closed loopback port: the RST is a round trip (reply, refused)."""
    from twisted.internet import reactor

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    result = yield TcpRtt(reactor).measure("127.0.0.1", port, 5.0)
    assert result.reply and result.refused
    assert result.rtt_ms is not None and result.rtt_ms >= 0
    assert "(refused)" in result.describe()


@pytest_twisted.inlineCallbacks
def test_ipv6_loopback() -> None:
    """IPv6 works the same way."""
    from twisted.internet import reactor

    try:
        listener = socket.socket(socket.AF_INET6)
        listener.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    listener.listen(1)
    try:
        result = yield TcpRtt(reactor).measure("::1", listener.getsockname()[1], 5.0)
    finally:
        listener.close()
    assert result.reply and result.address == "::1"


class PendingSocket:
    """A socket whose connect never finishes (a silent host)."""

    closed = False

    def __init__(self, *args) -> None:
        pass

    def setblocking(self, flag: bool) -> None:
        """Non-blocking is all we do."""

    def connect_ex(self, target) -> int:
        """The SYN left; no answer yet."""
        return errno.EINPROGRESS

    def fileno(self) -> int:
        """Never read: the fake reactor below does not poll."""
        return 99

    def close(self) -> None:
        """Remember the close."""
        PendingSocket.closed = True


class ClockReactor(task.Clock):
    """A Clock that records writers instead of polling them."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: set = set()

    def addWriter(self, w) -> None:  # noqa: N802
        """Watch ``w``."""
        self.writers.add(w)

    def removeWriter(self, w) -> None:  # noqa: N802
        """Stop watching ``w``."""
        self.writers.discard(w)


def test_silent_host_times_out_and_closes() -> None:
    """No answer within the timeout: no reply, socket closed, writer removed."""
    reactor = ClockReactor()
    PendingSocket.closed = False
    results: list[TcpRttResult] = []
    TcpRtt(reactor, socket_factory=PendingSocket).measure("192.0.2.1", 80, 2.0).addCallback(
        results.append
    )
    assert not results and len(reactor.writers) == 1
    reactor.advance(2.0)
    assert results == [TcpRttResult("192.0.2.1", 80, False, error="timeout")]
    assert PendingSocket.closed and not reactor.writers


def test_cancel_closes() -> None:
    """Cancelling forgets the attempt and closes its socket."""
    reactor = ClockReactor()
    PendingSocket.closed = False
    d = TcpRtt(reactor, socket_factory=PendingSocket).measure("192.0.2.1", 80, 2.0)
    d.addErrback(lambda f: None)
    d.cancel()
    assert PendingSocket.closed and not reactor.writers and not reactor.getDelayedCalls()


@pytest.mark.parametrize(
    ("address", "port", "error"),
    [
        ("example", 80, "not an IP address"),
        ("192.0.2.1", 0, "bad port"),
        ("192.0.2.1", 70000, "bad port"),
    ],
)
def test_bad_input_is_an_answer_not_a_crash(address, port, error) -> None:
    """Bad addresses and ports fire at once with the reason."""
    out: list[TcpRttResult] = []
    TcpRtt(ClockReactor()).measure(address, port, 1.0).addCallback(out.append)
    assert len(out) == 1 and not out[0].reply and out[0].error == error
