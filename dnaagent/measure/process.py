"""A process protocol for measurement programs (``ping``, ``traceroute``).

It keeps the program's output within bounds, can be killed (for a timeout or
a cancelled Deferred), and hands its Deferred to :meth:`finished` exactly once
when the program ends; subclasses only parse what it printed.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from twisted.internet import defer, error, protocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

T = TypeVar("T")


class MeasurementProcess(protocol.ProcessProtocol, Generic[T]):
    """Collects a measurement program's output; subclasses turn it into a result.

    ``keep_head`` keeps the first ``out_limit`` bytes of standard output (for
    programs whose useful output comes first) instead of the last ones.
    """

    log = Logger()
    program = "measurement"
    out_limit = 8192
    err_limit = 4096
    keep_head = False

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.deferred: defer.Deferred[T] | None = None
        self.killer: Any = None

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        """Keep standard output (bounded)."""
        joined = self.out + data
        self.out = joined[: self.out_limit] if self.keep_head else joined[-self.out_limit :]

    def errReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        """Keep standard error (bounded)."""
        self.err = (self.err + data)[-self.err_limit :]

    def kill(self) -> None:
        """Stop the process if it still runs."""
        try:
            transport: Any = self.transport
            transport.signalProcess("KILL")
        except (error.ProcessExitedAlready, AttributeError, OSError):
            self.log.failure(
                "{program} process already gone", level=LogLevel.debug, program=self.program
            )

    def last_error_line(self, default: str) -> str:
        """The last line the program wrote to standard error, or ``default``."""
        lines = self.err.decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else default

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 (Twisted's name)
        """Fire the Deferred (once) with :meth:`finished`'s result."""
        if self.killer is not None and self.killer.active():
            self.killer.cancel()
        d, self.deferred = self.deferred, None
        if d is None or d.called:
            return
        d.callback(self.finished())

    def finished(self) -> T:
        """The result of the ended program, from ``out`` and ``err``."""
        raise NotImplementedError
