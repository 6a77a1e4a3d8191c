"""Build the protocol object a plan names, refusing implementations that are not `Protocol`s."""

from __future__ import annotations

from mmbench.context import RunPlan
from mmbench.errors import PluginError
from mmbench.protocol import Protocol


def load_protocol(plan: RunPlan) -> Protocol:
    cls = plan.protocol.load()
    if not (isinstance(cls, type) and issubclass(cls, Protocol)):
        raise PluginError(f"protocol {plan.protocol.name!r}: {plan.protocol.target} is not a mmbench.protocol.Protocol")
    return cls(plan.config.section("protocol"))
