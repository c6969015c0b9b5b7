"""Errors raised by the overlay to its callers."""

from dnaagent.errors import DnaAgentError


class OverlayError(DnaAgentError):
    """Root of the overlay's errors."""


class RequestTimeout(OverlayError, TimeoutError):
    """A peer did not answer a request in time."""


class RemoteError(OverlayError, RuntimeError):
    """A peer answered a request with an error.

    ``code`` is one of the ``dnaagent.wire.ERR_*`` codes.
    """

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"remote error {code}: {text}")
        self.code = code
        self.text = text


class PeerNotFound(OverlayError, LookupError):
    """No live node with the requested ID could be found."""


class JoinError(OverlayError, ConnectionError):
    """No seed and no discovered peer answered: the node is alone."""


class NotRunning(OverlayError, RuntimeError):
    """The node has no transport yet, or has left the overlay."""


class StoreRefused(OverlayError, ValueError):
    """A value was not stored; ``reason`` says which limit refused it."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"value refused: {reason}")
        self.reason = reason
