"""The Mediator: dependencies, parallelism, timeouts, subsets, recording."""

from __future__ import annotations

import pytest
from twisted.internet import defer, task

from dnaagent.errors import DependencyCycleError, UnknownModuleError, UnknownTestError
from dnaagent.mediator.interface import InvalidParameters, Outcome, Status, TestResult, TestSpec
from dnaagent.mediator.mediator import Mediator
from dnaagent.mediator.plan import RunPlan, check_specs, select
from dnaagent.mediator.store import ResultsStore
from dnaagent.mediator.triggers import TEST_FAILED, TEST_RECOVERED, Event
from tests.fakes.modules import ScriptedModule, paper_like_specs, pending


def results_of(d: defer.Deferred[list[TestResult]]) -> dict[str, TestResult]:
    """The results a fired Deferred carries, by test name."""
    out: list[list[TestResult]] = []
    d.addCallback(out.append)
    assert out, "the run has not finished"
    return {r.test: r for r in out[0]}


def make(
    script: dict | None = None,
    specs: list[TestSpec] | None = None,
    store: ResultsStore | None = None,
) -> tuple[Mediator, ScriptedModule, task.Clock]:
    """A Mediator with one scripted module on a fake clock."""
    clock = task.Clock()
    clock.advance(1_000_000)
    mediator = Mediator(clock, store, default_timeout=5.0)
    module = ScriptedModule(specs or paper_like_specs(), script)
    mediator.register(module)
    return mediator, module, clock


def test_default_sequence_runs_all_default_tests_in_module_order() -> None:
    """Without a selection the default tests run and come back in module order."""
    mediator, module, _ = make()
    d = mediator.run("fake")
    out: list[list[TestResult]] = []
    d.addCallback(out.append)
    assert [r.test for r in out[0]] == ["NIC", "Link", "Loopback", "Address", "Resolver"]
    assert all(r.status is Status.OK for r in out[0])
    assert "Extra" not in module.started


def test_independent_tests_start_together_and_dependents_wait() -> None:
    """The three base tests run in parallel; dependents start only after all three."""
    gates = {name: defer.Deferred() for name in ("NIC", "Link", "Loopback")}
    script = {name: (lambda d=d: d) for name, d in gates.items()}
    mediator, module, clock = make(script)
    d = mediator.run("fake")
    assert module.started == ["NIC", "Link", "Loopback"]
    gates["NIC"].callback(Outcome.ok("up"))
    gates["Link"].callback(Outcome.ok("carrier"))
    assert module.started == ["NIC", "Link", "Loopback"]
    assert not d.called
    gates["Loopback"].callback(Outcome.ok("stack fine"))
    assert module.started[3:] == ["Address", "Resolver"]
    assert d.called


def test_failed_dependency_skips_dependents_naming_it() -> None:
    """A failed base test makes its dependents skipped with its name in the message."""
    mediator, module, _ = make({"Link": Outcome.error("no carrier")})
    found = results_of(mediator.run("fake"))
    assert found["Link"].status is Status.ERROR
    for name in ("Address", "Resolver"):
        assert found[name].status is Status.SKIPPED
        assert "Link" in found[name].message
        assert found[name].details["dependency"] == "Link"
    assert "Address" not in module.started


def test_warning_counts_as_success_for_dependents() -> None:
    """A warning is success with a remark: dependents still run."""
    mediator, _, _ = make({"NIC": Outcome.warning("half duplex")})
    found = results_of(mediator.run("fake"))
    assert found["Address"].status is Status.OK


def test_skip_cascades_through_chains() -> None:
    """A test depending on a skipped test is skipped too, naming the skipped one."""
    mediator, _, _ = make({"NIC": Outcome.error("gone")})
    found = results_of(mediator.run("fake", ["Extra"]))
    assert found["Address"].status is Status.SKIPPED
    assert found["Extra"].status is Status.SKIPPED
    assert "Address" in found["Extra"].message and "skipped" in found["Extra"].message


def test_subset_pulls_in_dependencies() -> None:
    """Selecting a dependent test also runs the tests it depends on."""
    mediator, module, _ = make()
    found = results_of(mediator.run("fake", ["Address"]))
    assert set(found) == {"NIC", "Link", "Loopback", "Address"}
    assert "Resolver" not in module.started


def test_subset_of_independent_test_runs_only_it() -> None:
    """A test without dependencies runs alone when selected alone."""
    mediator, module, _ = make()
    found = results_of(mediator.run("fake", ["Link"]))
    assert list(found) == ["Link"]
    assert module.started == ["Link"]


def test_optional_test_runs_when_selected() -> None:
    """Optional tests are not in the default sequence but run on request."""
    mediator, module, _ = make()
    found = results_of(mediator.run("fake", ["Extra"]))
    assert found["Extra"].status is Status.OK


def test_timeout_stops_a_hanging_test_and_dependents_skip() -> None:
    """A test that does not answer within its timeout is an error; its Deferred is cancelled."""
    hanging: list[defer.Deferred] = []

    def hang() -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        hanging.append(d)
        return d

    mediator, _, clock = make({"Loopback": hang})
    d = mediator.run("fake")
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.2)
    found = results_of(d)
    assert found["Loopback"].status is Status.ERROR
    assert "5 s" in found["Loopback"].message
    assert found["Loopback"].duration == pytest.approx(5.1)
    assert found["Address"].status is Status.SKIPPED
    assert hanging[0].called  # cancelled by the timeout


def test_per_test_timeout_overrides_default() -> None:
    """A TestSpec timeout is used instead of the Mediator default."""
    specs = [TestSpec("Quick", "quick", timeout=0.5)]
    mediator, _, clock = make({"Quick": pending()}, specs)
    d = mediator.run("fake")
    clock.advance(0.6)
    assert results_of(d)["Quick"].status is Status.ERROR


def test_crashing_test_is_an_error_not_a_crash() -> None:
    """An exception in a test becomes an error result naming the problem."""

    def boom() -> None:
        raise RuntimeError("driver exploded")

    mediator, _, _ = make({"NIC": boom})
    found = results_of(mediator.run("fake"))
    assert found["NIC"].status is Status.ERROR
    assert "driver exploded" in found["NIC"].message
    assert found["Address"].status is Status.SKIPPED


def test_wrong_return_type_is_an_error() -> None:
    """A test returning something other than an Outcome is reported, not trusted."""
    mediator, _, _ = make({"NIC": lambda: "fine"})
    found = results_of(mediator.run("fake"))
    assert found["NIC"].status is Status.ERROR
    assert "str" in found["NIC"].message


def test_coroutine_tests_are_supported() -> None:
    """A test may be an async function."""

    async def coro() -> Outcome:
        return Outcome.ok("from a coroutine", value=3)

    mediator, _, _ = make({"NIC": coro})
    found = results_of(mediator.run("fake"))
    assert found["NIC"].message == "from a coroutine"
    assert found["NIC"].details == {"value": 3}


def test_duration_and_start_come_from_the_clock() -> None:
    """A result's start time and duration are measured with the injected clock."""
    gate: defer.Deferred = defer.Deferred()
    mediator, _, clock = make({"NIC": lambda: gate})
    start = clock.seconds()
    d = mediator.run("fake", ["NIC"])
    clock.advance(1.25)
    gate.callback(Outcome.ok("up"))
    result = results_of(d)["NIC"]
    assert result.started == start
    assert result.duration == pytest.approx(1.25)


def test_unknown_module_and_test_raise_typed_errors() -> None:
    """Unknown names are refused at once with the known names in the message."""
    mediator, _, _ = make()
    with pytest.raises(UnknownModuleError):
        mediator.run("nope")
    with pytest.raises(UnknownTestError) as info:
        mediator.run("fake", ["NIC", "Bogus"])
    assert "Bogus" in str(info.value) and "Resolver" in str(info.value)


def test_invalid_parameters_are_refused_before_anything_runs() -> None:
    """Module parameters are validated by the module before any test starts."""
    mediator, module, _ = make()
    with pytest.raises(InvalidParameters):
        mediator.run("fake", params={"nic": "wlan0"})
    assert module.started == []
    assert mediator.active == []


def test_parameters_reach_the_run() -> None:
    """Parameters given to run() are handed to the module's run."""
    mediator, module, _ = make()
    mediator.run("fake", params={"nic": "eth1"})
    assert module.runs[-1].params == {"nic": "eth1"}


def test_active_runs_are_tracked() -> None:
    """A running module is listed in ``active`` until it finishes."""
    gate: defer.Deferred = defer.Deferred()
    mediator, _, _ = make({"NIC": lambda: gate})
    mediator.run("fake", ["NIC"])
    assert [a.module for a in mediator.active] == ["fake"]
    gate.callback(Outcome.ok("up"))
    assert mediator.active == []
    assert mediator.runs_completed == 1


def test_results_are_stored_and_triggers_fire(tmp_path) -> None:
    """Every result goes to the store; ok->error and error->ok fire events."""
    store = ResultsStore(tmp_path / "r.sqlite")
    script: dict = {}
    mediator, module, _ = make(script, store=store)
    events: list[Event] = []
    mediator.triggers.subscribe(events.append)
    results_of(mediator.run("fake", ["Link"]))
    module.script["Link"] = Outcome.error("no carrier")
    results_of(mediator.run("fake", ["Link"]))
    results_of(mediator.run("fake", ["Link"]))
    module.script["Link"] = Outcome.ok("carrier back")
    results_of(mediator.run("fake", ["Link"]))
    assert [e.kind for e in events] == [TEST_FAILED, TEST_RECOVERED]
    assert store.count() == 4
    assert [r.status for r in store.history(test="Link")] == [
        Status.OK,
        Status.ERROR,
        Status.ERROR,
        Status.OK,
    ]


def test_previous_results_survive_a_new_mediator(tmp_path) -> None:
    """A new Mediator on the same store knows the last status (no duplicate failure event)."""
    store = ResultsStore(tmp_path / "r.sqlite")
    mediator, _, _ = make({"Link": Outcome.error("down")}, store=store)
    results_of(mediator.run("fake", ["Link"]))
    again, _, _ = make({"Link": Outcome.error("still down")}, store=store)
    events: list[Event] = []
    again.triggers.subscribe(events.append)
    results_of(again.run("fake", ["Link"]))
    assert events == []


def test_module_with_cycle_is_refused() -> None:
    """Registering a module whose dependencies form a cycle fails with the cycle named."""
    specs = [TestSpec("A", "a", ("B",)), TestSpec("B", "b", ("A",))]
    with pytest.raises(DependencyCycleError, match="A -> B -> A|B -> A -> B"):
        Mediator(task.Clock()).register(ScriptedModule(specs))


def test_module_with_unknown_dependency_is_refused() -> None:
    """A dependency on a test the module lacks is refused."""
    with pytest.raises(DependencyCycleError, match="lacks"):
        check_specs("m", [TestSpec("A", "a", ("Z",))])


def test_select_keeps_module_order_and_dedups() -> None:
    """select() returns the closure in module order without duplicates."""
    specs = paper_like_specs()
    assert select("m", specs, ["Resolver", "Resolver", "NIC"]) == [
        "NIC",
        "Link",
        "Loopback",
        "Resolver",
    ]


def test_run_plan_refuses_finishing_a_test_twice() -> None:
    """The plan state machine rejects a finish for a test that is not running."""
    plan = RunPlan(paper_like_specs(), ["NIC"])
    ready, skipped = plan.start()
    assert ready == ["NIC"] and skipped == []
    plan.finish("NIC", Status.OK)
    assert plan.done
    with pytest.raises(ValueError):
        plan.finish("NIC", Status.OK)


def test_max_parallel_one_runs_tests_one_after_the_other() -> None:
    """With max_parallel=1 a test starts only when the previous one finished."""
    gates = {n: defer.Deferred() for n in ("NIC", "Link", "Loopback", "Address", "Resolver")}
    script = {name: (lambda d=d: d) for name, d in gates.items()}
    mediator, module, _ = make(script)
    mediator.max_parallel = 1
    d = mediator.run("fake")
    for i, name in enumerate(["NIC", "Link", "Loopback", "Address", "Resolver"]):
        assert module.started == ["NIC", "Link", "Loopback", "Address", "Resolver"][: i + 1]
        gates[name].callback(Outcome.ok("fine"))
    assert d.called


def test_max_parallel_two_caps_concurrency() -> None:
    """With max_parallel=2 at most two tests are running at any time."""
    gates = {n: defer.Deferred() for n in ("NIC", "Link", "Loopback")}
    script = {name: (lambda d=d: d) for name, d in gates.items()}
    mediator, module, _ = make(script)
    mediator.max_parallel = 2
    mediator.run("fake")
    assert module.started == ["NIC", "Link"]
    gates["Link"].callback(Outcome.ok("fine"))
    assert module.started == ["NIC", "Link", "Loopback"]
