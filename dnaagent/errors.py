"""Errors of dnaagent.

Every error the agent raises on purpose derives from :class:`DnaAgentError`.
Narrow subclasses also inherit the matching standard-library type so that
callers that only know Python's own exceptions still catch them.
"""


class DnaAgentError(Exception):
    """Root of every error raised by dnaagent on purpose."""


class ConfigError(DnaAgentError, ValueError):
    """A configuration value is missing, of the wrong type or out of range.

    ``key`` names the offending key (``section.name``) so that the operator
    sees exactly what to fix.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


class UnknownModuleError(DnaAgentError, KeyError):
    """A test module name that no loaded module has."""

    def __str__(self) -> str:
        return f"unknown test module {self.args[0]!r}"


class UnknownTestError(DnaAgentError, KeyError):
    """A test name that the selected module does not have."""

    def __str__(self) -> str:
        module, tests, known = self.args
        return (
            f"module {module!r} has no test named {', '.join(tests)}; "
            f"known tests: {', '.join(known)}"
        )


class DependencyCycleError(DnaAgentError, ValueError):
    """The dependencies declared by a test module form a cycle."""


class StoreError(DnaAgentError, RuntimeError):
    """The results store could not be opened or written."""


class ControlError(DnaAgentError, RuntimeError):
    """The control API answered with an error, or could not be reached."""
