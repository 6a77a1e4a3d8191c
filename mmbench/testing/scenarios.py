"""Whether a protocol's scenarios can be evaluated on a dataset's modalities. A scenario that names a
modality the dataset lacks would hand the method no input at all and still be scored (a "lidar only" row
computed from zeros): `mmbench run` refuses it before anything runs (mmbench/runs/preflight.py) and
`mmbench check protocol` reports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def scenario_problem(scenarios: Sequence[Any], modalities: Sequence[str]) -> str | None:
    """One line naming the first scenario that is malformed or needs a modality not in `modalities`."""
    from mmbench.protocol import Scenario

    if not scenarios:
        return "scenarios() returned no scenario; return at least one mmbench.protocol.Scenario"
    known = set(modalities)
    for scenario in scenarios:
        if not isinstance(scenario, Scenario):
            return f"scenarios() returned a {type(scenario).__name__}; return mmbench.protocol.Scenario objects"
        if not isinstance(scenario.name, str) or not scenario.name.strip():
            return f"a scenario has the name {scenario.name!r}; give every scenario a non-empty name"
        if not scenario.available:
            return f"scenario {scenario.name!r} makes no modality available; every scenario needs at least one"
        named = [*scenario.available, *scenario.corrupted]
        lacking = [name for name in named if name not in known]
        if lacking:
            return (
                f"scenario {scenario.name!r} needs modality {lacking[0]!r}, which the dataset lacks (it has "
                f"{', '.join(modalities)}); build scenarios from the `modalities` argument of scenarios(), "
                "or run on a dataset with that modality"
            )
        if not 0 <= scenario.drop_probability < 1:
            return f"scenario {scenario.name!r}: drop_probability {scenario.drop_probability} must lie in [0, 1)"
        bad = [ratio for ratio in scenario.corrupted.values() if not 0 <= ratio <= 1]
        if bad:
            return f"scenario {scenario.name!r}: corrupted ratio {bad[0]} must lie in [0, 1]"
    names = [scenario.name for scenario in scenarios]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        return f"scenario name {duplicates[0]!r} is used twice; records key scenarios by name, make them unique"
    return None
