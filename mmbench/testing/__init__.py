"""Contract checks of mmbench plugins, importable from tests (`mmbench check` runs the same; docs/checking.md).

    from mmbench.testing import check_method

    def test_my_method_keeps_the_contract():
        check_method("my-method")  # raises ContractViolation (an AssertionError) naming the broken rule

Each `check_*` returns a `CheckReport` whose `results` hold one `CheckResult` per rule.
"""

from mmbench.testing.dataset_checks import check_dataset
from mmbench.testing.method_checks import ALL_RULES, EVAL_RULES, RUN_RULES, check_method
from mmbench.testing.protocol_checks import check_protocol
from mmbench.testing.results import CheckReport, CheckResult, ContractViolation

__all__ = [
    "ALL_RULES",
    "EVAL_RULES",
    "RUN_RULES",
    "CheckReport",
    "CheckResult",
    "ContractViolation",
    "check_dataset",
    "check_method",
    "check_protocol",
]
