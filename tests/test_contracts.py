"""The contract checker (mmbench.testing, `mmbench check`; docs/checking.md): every built-in plugin keeps its
contract (registry-parametrized: a new method or protocol is checked without editing this file), a method that
keeps it passes every rule, and each way of breaking a rule is reported as that rule, in one line naming the
plugin.

The built-in methods run the rules that need only evaluation (RUN_RULES plus eval-buffers) at 32 px on two
modalities: the training-side rules (training loss, gradients, checkpoint round trip) cost a backward pass and a
second model per method, and tests/test_comparison_methods.py already checks exactly those properties of every
built-in method; here they run on the test-only methods, where they are cheap.
"""

from __future__ import annotations

import broken_methods
import pytest
import torch
from broken_methods import (
    BROKEN,
    COUNTS_CALLS,
    KEEPER,
    UNSAVED_SCALE,
    UNUSED_BRANCH,
    WITH_LIDAR,
)
from builtin_plugins import builtin_methods

from mmbench.protocol import Scenario
from mmbench.registry import PROTOCOLS
from mmbench.testing import ALL_RULES, RUN_RULES, ContractViolation, check_dataset, check_method, check_protocol
from mmbench.testing.method_checks import BUFFERS
from mmbench.testing.scenarios import scenario_problem

TWO_MODALITIES = {"optical": 3, "dsm": 1}
BUILTIN_RULES = (*RUN_RULES, BUFFERS)


def builtin_protocols() -> list[str]:
    return [
        r.name
        for r in PROTOCOLS.registrations()
        if r.sources and (r.sources[0].distribution or "").startswith("mmbench ")
    ]


@pytest.mark.parametrize("name", builtin_methods())
def test_every_builtin_method_keeps_the_contract(name):
    report = check_method(name, modalities=TWO_MODALITIES, rules=BUILTIN_RULES)  # raises on a broken rule
    checked = {result.rule for result in report.results}
    assert {"builds", "logits-shape", "class-count", "patterns", "eval-determinism", "eval-buffers"} <= checked
    assert "mmbench" in report.origin


@pytest.mark.parametrize("name", builtin_protocols())
def test_every_builtin_protocol_keeps_the_contract(name):
    report = check_protocol(name)
    assert [result.rule for result in report.results] == ["builds", "scenarios", "scenario-modalities", "aggregate"]


def test_the_synthetic_dataset_keeps_the_contract():
    report = check_dataset("synthetic", overrides=["dataset.tiles=5", "dataset.size=64"])
    assert {result.rule for result in report.results} >= {"prepare", "store-valid", "fingerprint-stable"}


def test_a_method_that_keeps_the_contract_passes_every_rule():
    report = check_method(KEEPER, rules=ALL_RULES)
    statuses = {result.rule: result.status for result in report.results}
    assert statuses.pop("split-interface") == "skip"  # no encode/decode
    assert set(statuses.values()) == {"pass"} and set(statuses) == set(ALL_RULES) - {"split-interface"}
    assert "not registered" in report.origin  # an unregistered spec is checked too, and says so


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_broken_method_fails_its_own_rule_in_one_line(name):
    value, rule = BROKEN[name]
    spec = getattr(broken_methods, value.partition(":")[2])
    with pytest.raises(ContractViolation) as caught:
        check_method(spec)
    message = str(caught.value)
    assert isinstance(caught.value, AssertionError) and "\n" not in message
    assert message.startswith(f"method {name!r} (") and f"breaks rule {rule!r}" in message
    assert caught.value.report.failures[0].rule == rule


def test_a_parameter_without_gradient_is_a_warning_not_a_failure():
    report = check_method(UNUSED_BRANCH)
    (warning,) = report.warnings
    assert warning.rule == "gradients" and "unused.weight" in warning.detail


def test_a_forward_that_changes_buffers_in_eval_mode_fails():
    report = check_method(COUNTS_CALLS, raise_on_failure=False)
    assert [result.rule for result in report.failures] == ["eval-buffers"]
    assert "calls" in report.failures[0].detail


def test_state_outside_the_state_dict_fails_the_checkpoint_round_trip():
    report = check_method(UNSAVED_SCALE, raise_on_failure=False)
    assert [result.rule for result in report.failures] == ["checkpoint"]


def test_the_checks_leave_the_global_random_state_alone():
    torch.manual_seed(7)
    before = torch.get_rng_state()
    check_method(KEEPER, rules=RUN_RULES)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_protocol_naming_a_missing_modality_fails_on_that_dataset_only():
    with pytest.raises(ContractViolation, match="rule 'scenario-modalities'.*'lidar'"):
        check_protocol(WITH_LIDAR)


@pytest.mark.parametrize(
    ("scenarios", "expected"),
    [
        ([], "no scenario"),
        ([Scenario("a", ("optical",)), Scenario("a", ("dsm",))], "'a' is used twice"),
        ([Scenario("empty", ())], "no modality available"),
        ([Scenario("x", ("optical",), corrupted={"lidar": 0.5})], "needs modality 'lidar'"),
        ([Scenario("p", ("optical",), drop_probability=1.0)], "drop_probability"),
        (["optical only"], "mmbench.protocol.Scenario"),
    ],
)
def test_malformed_scenarios_are_named(scenarios, expected):
    assert expected in scenario_problem(scenarios, ["optical", "dsm"])


def test_well_formed_scenarios_pass():
    assert (
        scenario_problem(
            [Scenario("optical only", ("optical",)), Scenario("all", ("optical", "dsm"))], ["optical", "dsm"]
        )
        is None
    )
