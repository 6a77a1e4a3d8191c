"""Conformance checks of a method plugin against `mmbench.method.SegmentationMethod` (docs/checking.md), in
the spirit of gymnasium's `check_env`: build it small, feed it random inputs, and check each rule of the
contract separately so that one run reports every broken rule, each as one line with its fix.

Everything runs on CPU on tiny inputs (default 32 px: a multiple of every built-in method's output stride),
with the model built from its defaults plus its implementation's `tiny_config` unless told otherwise. The
global torch RNG is left as it was (`torch.random.fork_rng`), so `mmbench run` can check a method before
training without changing the run's numbers.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from mmbench.method import SegmentationMethod, TrainStep, build_method
from mmbench.plugins import MethodSpec
from mmbench.registry import METHODS
from mmbench.testing.logits import CLASS_COUNT, FINITE, LOGITS_SHAPE, LOGITS_TYPE, logits_problem
from mmbench.testing.origin import describe_origin
from mmbench.testing.results import FAIL, PASS, SKIP, WARN, CheckReport

BUILDS, FORWARD, PATTERNS, NO_LEAK = "builds", "forward", "patterns", "no-leak"
DETERMINISM, BUFFERS, SPLIT = "eval-determinism", "eval-buffers", "split-interface"
TRAINING_LOSS, GRADIENTS, CHECKPOINT = "training-loss", "gradients", "checkpoint"

#: The rules `mmbench run` checks before training (mmbench/runs/preflight.py): those that need no backward
#: pass and no second model.
RUN_RULES = (BUILDS, FORWARD, LOGITS_TYPE, LOGITS_SHAPE, CLASS_COUNT, FINITE, PATTERNS, NO_LEAK, DETERMINISM)
#: The rules that run the model in eval mode only (no backward pass, one model).
EVAL_RULES = (*RUN_RULES, BUFFERS, SPLIT)
ALL_RULES = (*EVAL_RULES, TRAINING_LOSS, GRADIENTS, CHECKPOINT)

#: Channels of the synthetic benchmark's modalities (mmbench/datasets/synthetic.py): the default inputs.
SYNTHETIC_CHANNELS = {"optical": 3, "dsm": 1, "sar": 1}
FILLS = ("zeros", "noise", "nan")
IGNORE_INDEX = 255


def method_config(spec: MethodSpec, overrides: Mapping[str, Any] | None = None, *, tiny: bool = True) -> dict:
    """The method's defaults, its implementation's `tiny_config` (when `tiny`), then `overrides`."""
    from mmbench.config import load_defaults

    config = load_defaults(spec.defaults, spec.name)
    if tiny:
        config.update(getattr(spec.load(), "tiny_config", {}) or {})
    return {**config, **dict(overrides or {})}


def method_modalities(spec: MethodSpec, channels: Mapping[str, int] | None = None) -> dict[str, int]:
    """The modalities to build the method on: those of `channels` (default: the synthetic benchmark's) that
    the method accepts, or the ones it declares when the default set lacks them."""
    base = dict(channels or SYNTHETIC_CHANNELS)
    if spec.modalities:
        if channels is None:
            return {name: base.get(name, 1) for name in spec.modalities}
        return {name: count for name, count in base.items() if name in spec.modalities}
    return base


def accepted_patterns(spec: MethodSpec, names: Sequence[str]) -> list[tuple[bool, ...]]:
    """Every availability pattern the method must handle: non-empty, with its required modalities."""
    required = set(spec.required_modalities)
    return [
        pattern
        for pattern in itertools.product([True, False], repeat=len(names))
        if any(pattern) and all(pattern[i] for i, name in enumerate(names) if name in required)
    ]


class MethodChecker:
    """Runs the rules of one method on one set of modalities; results go to `report`."""

    def __init__(
        self,
        spec: MethodSpec,
        report: CheckReport,
        *,
        modalities: Mapping[str, int],
        num_classes: int,
        config: Mapping[str, Any],
        size: int,
        patterns: Sequence[tuple[bool, ...]] | None = None,
        device: str = "cpu",
        fills: Sequence[str] = FILLS,
    ) -> None:
        self.spec, self.report = spec, report
        self.device, self.fills = device, tuple(fills)
        self.modalities, self.names = dict(modalities), tuple(modalities)
        self.num_classes, self.config, self.size = num_classes, dict(config), size
        self.patterns = list(patterns) if patterns is not None else accepted_patterns(spec, self.names)
        self.generator = torch.Generator().manual_seed(0)
        self.model: SegmentationMethod | None = None
        #: Exception types raised through instead of recorded: `mmbench run` lets a config error stay one.
        self.propagate: tuple[type[BaseException], ...] = ()

    # -- helpers ---------------------------------------------------------------------------------------
    def _inputs(self, batch: int) -> dict[str, torch.Tensor]:
        return {
            name: torch.randn(batch, count, self.size, self.size, generator=self.generator).to(self.device)
            for name, count in self.modalities.items()
        }

    def _filled(self, inputs: Mapping[str, torch.Tensor], available: torch.Tensor, fill: str) -> dict:
        filled = {}
        for index, (name, x) in enumerate(inputs.items()):
            if fill == "nan":
                value = torch.full_like(x, float("nan"))
            elif fill == "noise":
                value = 10 * torch.randn(x.shape, generator=self.generator).to(self.device)
            else:
                value = torch.zeros_like(x)
            filled[name] = torch.where(available[:, index].view(-1, 1, 1, 1), x, value)
        return filled

    def _guard(self, rule: str, action: Callable[[], Any]) -> tuple[bool, Any]:
        """Run plugin code; an exception it raises fails `rule` with its type and message."""
        try:
            return True, action()
        except self.propagate:
            raise
        except Exception as exc:  # any exception from plugin code is the plugin's failure
            message = " ".join(str(exc).split()) or "(no message)"
            self.report.add(
                rule,
                FAIL,
                f"raised {type(exc).__name__}: {message}; fix the plugin's code (rerun with --debug for the traceback)",
            )
            self.report.exception = exc
            return False, None

    def _contract(self, logits: Any, batch: int, context: str) -> bool:
        problem = logits_problem(logits, batch, self.num_classes, (self.size, self.size))
        if problem is not None:
            rule, detail = problem
            self.report.add(rule, FAIL, f"{detail} ({context})")
            return False
        return True

    def _build(self, seed: int) -> SegmentationMethod:
        torch.manual_seed(seed)
        return build_method(self.spec, self.modalities, self.num_classes, self.config).to(self.device)

    # -- rules -----------------------------------------------------------------------------------------
    def run(self, rules: Sequence[str] = ALL_RULES) -> CheckReport:
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            self._run(set(rules))
        return self.report

    def _run(self, rules: set[str]) -> None:
        ok, model = self._guard(BUILDS, lambda: self._build(0))
        if not ok:
            return
        self.report.add(BUILDS, PASS, f"on {', '.join(self.names)} with {self.num_classes} classes")
        self.model = model
        model.eval()
        buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
        if not self._output():
            return
        deterministic = True
        if DETERMINISM in rules:
            deterministic = self._determinism()
        if NO_LEAK in rules:
            if deterministic:
                self._no_leak()
            else:
                self.report.add(NO_LEAK, SKIP, "needs a deterministic evaluation to compare outputs")
        if BUFFERS in rules:
            self._buffers(buffers)
        if SPLIT in rules:
            self._split()
        if TRAINING_LOSS in rules or GRADIENTS in rules or CHECKPOINT in rules:
            trained = self._training(GRADIENTS in rules)
            if CHECKPOINT in rules:
                if trained:
                    self._checkpoint()
                else:
                    self.report.add(CHECKPOINT, SKIP, "needs a training step that works")

    def _output(self) -> bool:
        """One batch mixing every accepted pattern (one per sample), missing inputs zero-filled as the engine
        does. When it breaks a rule, a batch with every modality tells the output rules from the pattern
        rules, and each pattern alone names the one that breaks."""
        model, patterns = self.model, self.patterns
        available = torch.tensor(patterns, dtype=torch.bool, device=self.device)
        self.mixed_inputs = self._inputs(len(patterns))
        inputs = self._filled(self.mixed_inputs, available, "zeros")
        ok, logits = self._guard(FORWARD, lambda: _no_grad(model, inputs, available))
        if ok and logits_problem(logits, len(patterns), self.num_classes, (self.size, self.size)) is None:
            self.mixed_logits = logits
            self._output_passed(logits, every=True)
            return True
        if not ok:
            self.report.results.pop()
        full = torch.ones(2, len(self.names), dtype=torch.bool, device=self.device)
        full_inputs = self._inputs(2)
        ok, logits = self._guard(FORWARD, lambda: _no_grad(model, full_inputs, full))
        if not ok or not self._contract(logits, 2, "every modality available, eval mode"):
            return False
        self._output_passed(logits, every=False)
        for pattern in patterns:
            one = torch.tensor([pattern], dtype=torch.bool, device=self.device)
            single = self._filled(self._inputs(1), one, "zeros")
            context = f"only {', '.join(n for n, a in zip(self.names, pattern, strict=True) if a)} available"
            ok, logits = self._guard(PATTERNS, lambda s=single, o=one: _no_grad(model, s, o))
            if not ok:
                result = self.report.results.pop()
                self.report.add(PATTERNS, FAIL, f"{context}: {result.detail}")
                return False
            if not self._contract(logits, 1, context):
                return False
        self.report.add(
            PATTERNS,
            FAIL,
            "each availability pattern works alone but a batch mixing them (one per sample) fails; "
            "availability is per sample: index it by row, never reduce it over the batch",
        )
        return False

    def _output_passed(self, logits: torch.Tensor, *, every: bool) -> None:
        self.report.add(FORWARD, PASS, "runs in eval mode")
        self.report.add(LOGITS_TYPE, PASS, f"{str(logits.dtype).removeprefix('torch.')} logits")
        self.report.add(LOGITS_SHAPE, PASS, f"(B, K, H, W) = {tuple(logits.shape)} at the input size")
        self.report.add(CLASS_COUNT, PASS, f"{self.num_classes} classes")
        self.report.add(FINITE, PASS, "finite on finite inputs")
        if every:
            self.report.add(PATTERNS, PASS, f"{len(self.patterns)} availability patterns in one batch")

    def _no_leak(self) -> None:
        """A missing modality's input holds no information: zeros, noise and NaN there give the same logits."""
        model = self.model
        available = torch.tensor(self.patterns, dtype=torch.bool, device=self.device)
        if bool(available.all()):
            self.report.add(NO_LEAK, SKIP, "the method accepts no pattern with a missing modality")
            return
        reference = self.mixed_logits
        for fill in [fill for fill in self.fills if fill != "zeros"]:
            inputs = self._filled(self.mixed_inputs, available, fill)
            ok, logits = self._guard(NO_LEAK, lambda i=inputs: _no_grad(model, i, available))
            if not ok:
                return
            if not (isinstance(logits, torch.Tensor) and logits.shape == reference.shape):
                self._contract(logits, len(self.patterns), f"missing inputs filled with {fill}")
                return
            tolerance = 1e-4 + 1e-4 * reference.abs().flatten(1).amax(1)
            differs = ~torch.isfinite(logits).flatten(1).all(1) | (
                (logits - reference).abs().flatten(1).amax(1) > tolerance
            )
            if bool(differs.any()):
                rows = [int(row) for row in differs.nonzero().flatten()]
                partial = [row for row in rows if not all(self.patterns[row])]
                if partial:
                    given = ", ".join(n for n, a in zip(self.names, self.patterns[partial[0]], strict=True) if a)
                    where = f"e.g. with only {given} available"
                else:  # only complete samples changed: the missing inputs of *other* samples reached them
                    where = "in samples that have every modality: the batch's missing inputs reach other samples"
                self.report.add(
                    NO_LEAK,
                    FAIL,
                    f"filling a missing modality with {fill} instead of zeros changes the logits ({where}): the "
                    "method reads a missing input; mask it out with torch.where(available, x, 0), never x * mask "
                    "(NaN * 0 is NaN), and keep batch-wide statistics off the missing inputs",
                )
                return
        self.report.add(NO_LEAK, PASS, "zeros, noise and NaN in missing inputs give identical, finite logits")

    def _determinism(self) -> bool:
        """The mixed batch again, in eval mode: the same logits (evaluation must not sample)."""
        model = self.model
        available = torch.tensor(self.patterns, dtype=torch.bool, device=self.device)
        inputs = self._filled(self.mixed_inputs, available, "zeros")
        ok, second = self._guard(DETERMINISM, lambda: _no_grad(model, inputs, available))
        if not ok:
            return False
        first = self.mixed_logits
        if not (isinstance(second, torch.Tensor) and second.shape == first.shape) or not bool(
            torch.allclose(first, second, atol=1e-6, rtol=1e-5)
        ):
            difference = float((first - second).abs().max()) if isinstance(second, torch.Tensor) else float("nan")
            self.report.add(
                DETERMINISM,
                FAIL,
                f"the same input twice in eval mode gives logits differing by up to {difference:.3g}; evaluation "
                "must not sample: disable dropout and random draws when not self.training",
            )
            return False
        self.report.add(DETERMINISM, PASS, "the same input twice gives the same logits")
        return True

    def _buffers(self, before: Mapping[str, torch.Tensor]) -> None:
        changed = [
            name
            for name, buffer in self.model.named_buffers()
            if name in before
            and (buffer.shape != before[name].shape or not bool(torch.equal(buffer.detach(), before[name])))
        ]
        if changed:
            self.report.add(
                BUFFERS,
                FAIL,
                f"forward in eval mode changed buffer(s) {', '.join(changed[:3])}; update statistics only when "
                "self.training (BatchNorm does), so evaluation leaves the model as it found it",
            )
        else:
            self.report.add(BUFFERS, PASS, "forward in eval mode leaves every buffer unchanged")

    def _split(self) -> None:
        model = self.model
        if not model.has_split_interface:
            self.report.add(SPLIT, SKIP, "no encode/decode: the engine runs forward per scenario")
            return
        available = torch.tensor(self.patterns, dtype=torch.bool, device=self.device)
        inputs = self._filled(self.mixed_inputs, available, "zeros")

        def split() -> torch.Tensor:
            with torch.no_grad():
                return model.decode(model.encode_available(inputs, available), available)

        ok, logits = self._guard(SPLIT, split)
        if not ok or not self._contract(logits, len(self.patterns), "decode(encode(...)), the split interface"):
            return
        if not bool(torch.allclose(logits, self.mixed_logits, atol=1e-4, rtol=1e-4)):
            self.report.add(
                SPLIT,
                FAIL,
                "decode(encode_available(...)) differs from forward on the same inputs; make forward call the same "
                "encode and decode, or drop the split interface",
            )
            return
        self.report.add(SPLIT, PASS, "decode(encode(...)) equals forward")

    def _training(self, gradients: bool) -> bool:
        model = self.model
        model.train()
        batch_size = 2
        inputs = self._inputs(batch_size)
        label = torch.randint(0, self.num_classes, (batch_size, self.size, self.size), generator=self.generator)
        label = label.to(self.device)
        label[:, :2] = IGNORE_INDEX
        batch = {
            "inputs": inputs,
            "label": label,
            "available": torch.ones(batch_size, len(self.names), dtype=torch.bool, device=self.device),
        }
        info = TrainStep(step=0, micro=0, seed=0, ignore_index=IGNORE_INDEX, num_classes=self.num_classes)
        adversary = {id(p) for p in model.adversary_parameters()}
        if adversary:
            ok, terms = self._guard(TRAINING_LOSS, lambda: model.adversary_loss(batch, info))
            if not ok or not self._finite_loss(terms, "adversary_loss"):
                return False
            model.zero_grad(set_to_none=True)
        ok, terms = self._guard(TRAINING_LOSS, lambda: model.training_loss(batch, info))
        if not ok or not self._finite_loss(terms, "training_loss"):
            return False
        ok, _ = self._guard(TRAINING_LOSS, lambda: terms["loss"].backward())
        if not ok:
            return False
        self.report.add(TRAINING_LOSS, PASS, f"finite; terms {', '.join(terms)}")
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) not in adversary]
        bad = [n for n, p in trainable if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        used = [n for n, p in trainable if p.grad is not None and bool(p.grad.ne(0).any())]
        if gradients:
            if bad:
                self.report.add(GRADIENTS, FAIL, f"non-finite gradient in {', '.join(bad[:3])}; check the loss terms")
                return False
            if not used:
                self.report.add(
                    GRADIENTS,
                    FAIL,
                    "the training loss reaches no parameter (every gradient is zero or None); do not detach the "
                    "logits, or compute the loss from the model's output",
                )
                return False
            unused = [n for n, _ in trainable if n not in set(used)]
            if unused:
                self.report.add(
                    GRADIENTS,
                    WARN,
                    f"{len(unused)} of {len(trainable)} trainable parameters got no gradient from one training step "
                    f"(e.g. {', '.join(unused[:3])}); fine if a sampled branch skipped them, else freeze or drop them",
                )
            else:
                self.report.add(GRADIENTS, PASS, f"all {len(trainable)} trainable parameters get a gradient")
        with torch.no_grad():  # move the weights off their initial values, so the round trip proves something
            for _, parameter in trainable:
                if parameter.grad is not None:
                    parameter.add_(parameter.grad.sign(), alpha=-1e-2)
        model.zero_grad(set_to_none=True)
        return True

    def _finite_loss(self, terms: Any, where: str) -> bool:
        if not isinstance(terms, Mapping) or "loss" not in terms or not isinstance(terms["loss"], torch.Tensor):
            self.report.add(
                TRAINING_LOSS,
                FAIL,
                f"{where} returned {type(terms).__name__}; return a dict of tensors with the total under 'loss'",
            )
            return False
        loss = terms["loss"]
        if loss.numel() != 1 or not loss.requires_grad:
            self.report.add(
                TRAINING_LOSS,
                FAIL,
                f"{where}()['loss'] has shape {tuple(loss.shape)} and requires_grad={loss.requires_grad}; return "
                "one scalar computed from the model's parameters",
            )
            return False
        if not bool(torch.isfinite(loss.detach()).all()):
            self.report.add(
                TRAINING_LOSS,
                FAIL,
                f"{where}()['loss'] is {float(loss.detach())} on finite random inputs; check logs, divisions and "
                "the logits it is computed from",
            )
            return False
        return True

    def _checkpoint(self) -> None:
        model = self.model
        model.eval()
        inputs = self._inputs(2)
        available = torch.ones(2, len(self.names), dtype=torch.bool, device=self.device)
        buffer = io.BytesIO()

        def round_trip() -> tuple[torch.Tensor, torch.Tensor]:
            torch.save(model.state_dict(), buffer)
            buffer.seek(0)
            restored = self._build(1234)
            restored.load_state_dict(torch.load(buffer, map_location=self.device, weights_only=True))
            restored.eval()
            return _no_grad(model, inputs, available), _no_grad(restored, inputs, available)

        ok, pair = self._guard(CHECKPOINT, round_trip)
        if not ok:
            return
        if not bool(torch.equal(*pair)):
            difference = float((pair[0] - pair[1]).abs().max())
            self.report.add(
                CHECKPOINT,
                FAIL,
                f"after a state_dict save and load into a fresh model the logits differ by up to {difference:.3g}; "
                "register every tensor forward uses as a parameter or a persistent buffer",
            )
            return
        self.report.add(CHECKPOINT, PASS, "state_dict save/load gives the same logits")


def _no_grad(model: SegmentationMethod, inputs: Mapping[str, torch.Tensor], available: torch.Tensor) -> Any:
    with torch.no_grad():
        return model(inputs, available)


def check_method(
    method: str | MethodSpec,
    *,
    modalities: Mapping[str, int] | None = None,
    num_classes: int = 4,
    config: Mapping[str, Any] | None = None,
    tiny: bool = True,
    size: int = 32,
    rules: Sequence[str] = ALL_RULES,
    patterns: Sequence[tuple[bool, ...]] | None = None,
    raise_on_failure: bool = True,
) -> CheckReport:
    """Check a method against the contract; raises `ContractViolation` (an AssertionError) on the first
    broken rule unless `raise_on_failure` is False. Returns the report (every rule's `CheckResult`).

    `method` is a registered name or a `MethodSpec` (e.g. one a test builds without registering it);
    `modalities` maps modality to channels (default: the synthetic benchmark's that the method accepts);
    `config` overrides the defaults (plus `tiny_config` when `tiny`).
    """
    spec = METHODS.get(method) if isinstance(method, str) else method
    origin = describe_origin(METHODS, spec.name)
    report = CheckReport("method", spec.name, origin)
    chosen = method_modalities(spec, modalities)
    problem = _modality_problem(spec, chosen)
    if problem:
        report.add(BUILDS, FAIL, problem)
    else:
        try:
            resolved = method_config(spec, config, tiny=tiny)
        except Exception as exc:  # a spec whose implementation or defaults do not load
            report.add(BUILDS, FAIL, " ".join(str(exc).split()))
        else:
            MethodChecker(
                spec, report, modalities=chosen, num_classes=num_classes, config=resolved, size=size, patterns=patterns
            ).run(rules)
    if raise_on_failure:
        report.raise_for_failures()
    return report


def _modality_problem(spec: MethodSpec, modalities: Mapping[str, int]) -> str | None:
    if len(modalities) < spec.min_modalities or not set(spec.required_modalities) <= set(modalities):
        return (
            f"cannot be built on {', '.join(modalities) or 'no modalities'} (it declares "
            f"{spec.describe_modalities()}); check it on a dataset with those modalities (--dataset)"
        )
    return None
