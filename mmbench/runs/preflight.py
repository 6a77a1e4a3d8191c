"""What `mmbench run` checks after the dataset is known and before anything trains or evaluates.

1. The protocol's scenarios against the dataset's modalities: a scenario naming a modality the store lacks
   would feed the method no input at all and still be scored, a silent wrong result; it is refused (exit 2)
   whatever the method.
2. For methods the training engine runs (`SegmentationMethod`s), the cheap subset of the contract checks
   (`mmbench.testing.RUN_RULES`): the model built at the run's config, modalities and classes, in eval mode on
   one random 64-px batch (the size the run's parameter budget probes anyway) holding each availability
   pattern of the protocol's fixed scenarios: float logits (B, K, H, W) at the input size with the dataset's
   class count, finite, the same when missing inputs are zeros or NaN, the same twice. A broken
   contract stops the run in seconds instead of after training, blaming the plugin (exit 2); a built-in
   method failing it is mmbench's bug (exit 1). It costs one extra model build and three forward passes on
   the run's device (measured in docs/checking.md), and leaves the random state as it was.
3. First of all, the tile store itself (`check_store`, mmbench/data/store_checks.py): its structure
   (attributes, shapes, statistics, and the run's split: the parts it reads non-empty, in range, disjoint) in
   milliseconds, then the values of the tiles the run reads (labels within the classes, finite inputs), once
   per store fingerprint, only when they decode to at most `SCAN_LIMIT_BYTES` and not for a smoke run; beyond
   that the loader's per-tile check stops the run at the first read of a bad tile. A bad store is refused
   (exit 2) naming the split, part, tile or modality, with `mmbench data verify` as the way to see every
   problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmbench.context import DatasetFacts, RunPlan
from mmbench.errors import ConfigError, PluginContractError, UserError
from mmbench.protocol import Protocol
from mmbench.registry import METHODS, PROTOCOLS
from mmbench.testing.origin import describe_origin, is_builtin
from mmbench.testing.scenarios import scenario_problem

PREFLIGHT_SIZE = 64  # px, as mmbench.method.BUDGET_PROBE_SIZE: every run's model already handles it


def check_training_settings(plan: RunPlan) -> None:
    """The training engine's own rules on `method.train` (and `train.adversary`), checked before a run folder
    exists or a store is read, and by `--dry-run`: the engine checks them again when it starts
    (mmbench/engine/settings.py), but a bad value found there would have cost the store scan first. Methods
    with their own `execute()` are not trained by the engine: their settings are theirs."""
    from mmbench.engine.settings import adversary_settings, train_settings
    from mmbench.engine.trainer import is_trainable

    implementation = plan.method.load()
    if callable(getattr(implementation, "execute", None)) or not is_trainable(implementation):
        return
    method_config = plan.config.section("method")
    settings = train_settings(method_config, plan.options.smoke)
    if "adversary" in settings:
        adversary_settings(settings, plan.method.name)
    if plan.config.section("run").get("compile", False):
        from mmbench.engine.speed import check_compile
        from mmbench.runtime.device import resolve_device

        check_compile(resolve_device(str(plan.config.section("run")["device"])))


def check_before_running(plan: RunPlan, facts: DatasetFacts | None, *, trainable: bool) -> None:
    """Raise a one-line `UserError` when the run cannot give honest numbers (see the module docstring)."""
    implementation = plan.protocol.load()
    if not (isinstance(implementation, type) and issubclass(implementation, Protocol)):
        return  # not a mmbench Protocol: only a method's own executor can use it, and it checks it
    if facts is None and plan.dataset.path is not None and not trainable:
        try:  # a method's own executor may run on a file that is not a tile store: its business, not ours
            facts = DatasetFacts.from_store(plan.dataset.path, name=plan.dataset.name)
        except UserError:
            return
    if facts is None:
        return  # a dataset without a store: the method's own executor knows what it runs on
    from mmbench.evaluation.engine import protocol_context
    from mmbench.evaluation.protocols import load_protocol

    protocol = load_protocol(plan)
    check_store(facts, protocol, trainable=trainable, scan=not plan.options.smoke)
    modalities = protocol.select_modalities(facts.modality_names)
    context = {**protocol_context(facts, protocol), "modalities": list(modalities)}
    scenarios = protocol.scenarios(modalities, context)
    problem = scenario_problem(list(scenarios), modalities)
    if problem is not None:
        raise ConfigError(
            f"protocol {plan.protocol.name!r} ({describe_origin(PROTOCOLS, plan.protocol.name)}) on dataset "
            f"{facts.name!r}: {problem}"
        )
    if trainable:
        check_method_contract(plan, facts, modalities, scenarios)


def check_store(facts: DatasetFacts, protocol: Protocol, *, trainable: bool, scan: bool = True) -> None:
    """Refuse a store the run cannot give honest numbers on (item 3 of the module docstring): the parts a
    training run reads (train, val and the protocol's evaluation part of its split), or the evaluation part
    alone for a checkpoint's evaluation. `scan=False` (a smoke run, which reads a few tiles) leaves the
    values to the loader's check of the tiles actually read."""
    from mmbench.data.store_checks import scan_values, structure_problems
    from mmbench.data.store_format import StoreError
    from mmbench.data.store_reader import TileStore
    from mmbench.progress import progress_bar

    config = protocol.config
    split, variant = config.get("split"), config.get("label_variant", "full")
    names = ["train", "val", config.get("part", "test")] if trainable else [config.get("part", "test")]
    parts = [(split, name) for name in dict.fromkeys(names)]
    hint = f"fix or re-create the store; 'mmbench data verify {facts.path}' lists every problem"
    with TileStore(facts.path) as store:
        for problem in structure_problems(store, parts):
            raise StoreError(f"dataset {facts.path}: {problem}; {hint}")
        if variant not in store.label_variants:
            return  # the protocol's config error, reported with its fix where the labels are read
        try:
            indices = [int(index) for _, part in parts for index in store.split_indices(split, part)]
        except StoreError:
            return  # an unknown split: the run's config error, reported where it is read
        if not scan:
            return
        modalities = [name for name in protocol.select_modalities(facts.modality_names) if name in facts.modalities]
        with progress_bar(f"checking the values of {facts.path.name}", total=len(set(indices))) as advance:
            problem = scan_values(store, indices, modalities, [variant], facts.fingerprint, progress=advance)
    if problem:
        raise StoreError(f"dataset {facts.path}: {problem}; no model was trained or scored on it: {hint}")


def availability_patterns(scenarios: Sequence[Any], modalities: Sequence[str]) -> list[tuple[bool, ...]]:
    """The distinct availability patterns of the fixed scenarios, every modality first; all modalities only
    when every scenario draws its availability per sample."""
    patterns = [tuple(True for _ in modalities)]
    for scenario in scenarios:
        if scenario.per_sample:
            continue
        pattern = tuple(name in scenario.available for name in modalities)
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


def check_method_contract(plan: RunPlan, facts: DatasetFacts, modalities: Sequence[str], scenarios: Sequence) -> None:
    """The cheap contract rules on the run's real modalities, classes and config (see the module docstring)."""
    from mmbench.runtime.device import resolve_device
    from mmbench.runtime.distributed import init_distributed
    from mmbench.testing.method_checks import RUN_RULES, MethodChecker
    from mmbench.testing.results import CheckReport

    device = resolve_device(plan.run_settings["device"])
    dist = init_distributed(device)
    if dist.enabled and device.startswith("cuda"):
        device = f"cuda:{dist.local_rank}"  # as the training engine places each rank
    spec = plan.method
    report = CheckReport("method", spec.name, describe_origin(METHODS, spec.name))
    checker = MethodChecker(
        spec,
        report,
        modalities=facts.channels(modalities),
        num_classes=len(facts.classes),
        config=plan.config.section("method"),
        size=PREFLIGHT_SIZE,
        patterns=availability_patterns(scenarios, modalities),
        device=device,
        fills=("zeros", "nan"),  # NaN is what the engine's checks catch; noise would add a forward pass
    )
    checker.propagate = (UserError,)  # a bad setting stays the config error it was before this check
    checker.run(RUN_RULES)
    if report.ok:
        return
    hint = f"found before training; 'mmbench check method {spec.name}' checks every rule"
    line = f"{report.line(report.failures[0])} ({hint})"
    if is_builtin(METHODS, spec.name):
        raise RuntimeError(f"built-in {line}") from report.exception
    raise PluginContractError(line) from report.exception
