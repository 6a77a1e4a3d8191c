"""Check results and the one-line messages every contract check reports (docs/checking.md).

A check never raises on a broken plugin: it records a `CheckResult` per rule, so `mmbench check` can show them
all in one table and `mmbench.testing` can raise the first failure as a `ContractViolation`, an
`AssertionError` whose message is the same line the CLI prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one rule: `detail` is one line; on failure it says what was seen and the fix."""

    rule: str
    status: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL


class ContractViolation(AssertionError):
    """A plugin broke a contract rule; the message is the one line `mmbench check` prints. `report` holds
    every rule's result."""

    def __init__(self, message: str, report: CheckReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class CheckReport:
    """Every rule checked for one plugin, with where the plugin comes from (its distribution)."""

    kind: str
    name: str
    origin: str
    results: list[CheckResult] = field(default_factory=list)
    exception: BaseException | None = None  # the plugin's exception behind a failure, for --debug

    def add(self, rule: str, status: str, detail: str = "") -> CheckResult:
        result = CheckResult(rule, status, " ".join(detail.split()))
        self.results.append(result)
        return result

    @property
    def failures(self) -> list[CheckResult]:
        return [result for result in self.results if result.failed]

    @property
    def warnings(self) -> list[CheckResult]:
        return [result for result in self.results if result.status == WARN]

    @property
    def ok(self) -> bool:
        return not self.failures

    def line(self, result: CheckResult) -> str:
        """`method 'x' (from dist 1.0) breaks rule 'logits-shape': <what was seen>; <the fix>`."""
        return f"{self.kind} {self.name!r} ({self.origin}) breaks rule {result.rule!r}: {result.detail}"

    def raise_for_failures(self) -> None:
        """Raise the first failure as a `ContractViolation` (an AssertionError, for pytest)."""
        if self.failures:
            raise ContractViolation(self.line(self.failures[0]), self)
