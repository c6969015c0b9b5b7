"""The Mediator's dependency logic as a pure state machine.

A :class:`RunPlan` knows which tests of a selection have finished, which may
start now and which can no longer run because a dependency did not succeed.
It does no I/O and keeps no time: the Mediator feeds it finished tests and
starts what it returns. See ``docs/mediator.md`` for the state diagram.

Each test of a plan moves through::

    waiting --(all dependencies succeeded)--> ready --> running --> done
    waiting --(a dependency failed or was skipped)--> skipped
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dnaagent.errors import DependencyCycleError, UnknownTestError
from dnaagent.mediator.interface import Status, TestSpec


def check_specs(module: str, specs: Sequence[TestSpec]) -> None:
    """Refuse specs with duplicate names, unknown dependencies or a cycle."""
    names = [s.name for s in specs]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DependencyCycleError(f"module {module!r} declares test {name!r} twice")
        seen.add(name)
    by_name = {s.name: s for s in specs}
    for spec in specs:
        for dep in spec.depends_on:
            if dep not in by_name:
                raise DependencyCycleError(
                    f"test {module}.{spec.name} depends on {dep!r}, which the module lacks"
                )
    # Depth-first search for a cycle, reporting its path.
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name) :] + [name]
            raise DependencyCycleError(
                f"module {module!r} has a dependency cycle: {' -> '.join(cycle)}"
            )
        state[name] = 1
        for dep in by_name[name].depends_on:
            visit(dep, path + [name])
        state[name] = 2

    for name in names:
        visit(name, [])


def select(module: str, specs: Sequence[TestSpec], wanted: Iterable[str] | None) -> list[str]:
    """The tests to run for a request, dependencies included, in module order.

    ``wanted`` None means the default sequence. A selected test whose
    dependencies were not selected gets them added: the Mediator never starts
    a test before its dependencies succeeded.
    """
    by_name = {s.name: s for s in specs}
    if wanted is None:
        chosen = [s.name for s in specs if s.default]
    else:
        chosen = list(dict.fromkeys(wanted))
        unknown = [name for name in chosen if name not in by_name]
        if unknown:
            raise UnknownTestError(module, unknown, [s.name for s in specs])
    closure: set[str] = set()
    stack = list(chosen)
    while stack:
        name = stack.pop()
        if name in closure:
            continue
        closure.add(name)
        stack.extend(by_name[name].depends_on)
    return [s.name for s in specs if s.name in closure]


@dataclass(frozen=True)
class Skip:
    """A test that will not run, and the dependency that stopped it."""

    test: str
    dependency: str
    dependency_status: Status

    @property
    def message(self) -> str:
        """The sentence shown to the operator."""
        if self.dependency_status is Status.SKIPPED:
            return f"not run: it depends on {self.dependency}, which was skipped"
        return f"not run: it depends on {self.dependency}, which failed"


class RunPlan:
    """Which tests of a selection may start, given the ones that finished."""

    def __init__(self, specs: Sequence[TestSpec], selection: Sequence[str]) -> None:
        by_name = {s.name: s for s in specs}
        self._deps = {name: tuple(by_name[name].depends_on) for name in selection}
        self._order = list(selection)
        self._status: dict[str, Status] = {}
        self._started: set[str] = set()

    @property
    def done(self) -> bool:
        """True when every test of the selection finished or was skipped."""
        return len(self._status) == len(self._order)

    def results(self) -> dict[str, Status]:
        """The final status of every finished or skipped test so far."""
        return dict(self._status)

    def start(self) -> tuple[list[str], list[Skip]]:
        """Tests to start now, and tests skipped, at the beginning of a run."""
        return self._advance()

    def finish(self, test: str, status: Status) -> tuple[list[str], list[Skip]]:
        """Record that ``test`` ended with ``status``; return what follows."""
        if test not in self._started or test in self._status:
            raise ValueError(f"test {test!r} was not running")
        self._status[test] = status
        return self._advance()

    def _advance(self) -> tuple[list[str], list[Skip]]:
        ready: list[str] = []
        skipped: list[Skip] = []
        progress = True
        while progress:
            progress = False
            for name in self._order:
                if name in self._started or name in self._status:
                    continue
                blocking = next(
                    (
                        d
                        for d in self._deps[name]
                        if d in self._status and not self._status[d].succeeded
                    ),
                    None,
                )
                if blocking is not None:
                    skip = Skip(name, blocking, self._status[blocking])
                    self._status[name] = Status.SKIPPED
                    skipped.append(skip)
                    progress = True  # a skip may cascade to later tests
                elif all(d in self._status for d in self._deps[name]):
                    self._started.add(name)
                    ready.append(name)
        return ready, skipped
