"""Compatibility alias: the run types moved to `mmbench.context` (docs/plugins.md lists the stable names).

Plugins written against the first documentation import `RunContext` and `RunOutcome` from here; they keep
working. New code imports from `mmbench.context`.
"""

from mmbench.context import DatasetRef, Executor, RunContext, RunOutcome, RunPlan

__all__ = ["DatasetRef", "Executor", "RunContext", "RunOutcome", "RunPlan"]
