"""Shared method blocks are versioned with the methods that use them.

Every module of methods/blocks/ has a stored fingerprint of its numerical behaviour, together with the versions
(`MethodSpec.version`) of the built-in methods that import it, in tests/fixtures/shared_blocks.json. A block whose
numbers change while a dependent's version stays the same fails here: that method's records would silently mean
something else. Regenerate the fixture, after bumping the dependents' versions, with

    python tests/test_shared_blocks.py --update

which refuses while a changed block still has an unbumped dependent.

Fingerprints. Every public class and function a block defines is run by a probe below on fixed seeded inputs,
in float64 on one CPU thread, and its outputs are quantised to 5 significant digits of each tensor's largest
magnitude (4 where a block computes in float32 itself) and hashed, so that the rounding differences between
CPUs do not change a fingerprint while any real change does. A public name without a probe is a failure too.

Dependents. The built-in methods (the registry's entries from the mmbench distribution) whose spec module or
implementation module reaches the block through imports, read from the source with `ast` over the installed
layout of pyproject.toml's `[tool.setuptools] package-dir`; no list of methods is kept by hand.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import importlib
import json
import math
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from mmbench.method import TrainStep
from mmbench.methods.blocks import attention, backbones, common, imputation, mmformer, pix2pix, shared_encoder
from mmbench.registry import METHODS

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "shared_blocks.json"
UPDATE = "python tests/test_shared_blocks.py --update"
BLOCKS_PACKAGE = "mmbench.methods.blocks"
DIGITS = 5
# Public names that have no numerical behaviour to pin, with the reason.
NOT_NUMERICAL = {
    "methods/blocks/attention": {"xformers_installed": "reports whether a package is installed, not a number"},
    "methods/blocks/pix2pix": {"pattern_groups": "groups rows by pattern id; probed through PatternBatchNorm2d"},
}


# -- the import graph --------------------------------------------------------------------------------------------
def installed_modules() -> dict[str, Path]:
    """Module name -> source file, for every module of the installed layout (package-dir of pyproject.toml)."""
    package_dir = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    modules: dict[str, Path] = {}
    for package, folder in package_dir.items():
        root = REPO_ROOT / folder
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def _imported(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """Modules of `known` that `name` imports anywhere (function-level and TYPE_CHECKING imports included),
    with the packages their import runs."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            if node.level:
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for candidate in candidates:
            parts = candidate.split(".")
            found.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    known = installed_modules()
    return {name: _imported(name, path, known) for name, path in known.items()}


def builtin_method_roots() -> dict[str, tuple[str, set[str]]]:
    """Built-in method -> (its version, the modules it starts from: the entry point's and the spec target's)."""
    roots = {}
    for registration in METHODS.registrations():
        source = registration.sources[0]
        if not (source.distribution or "").startswith("mmbench ") or registration.spec is None:
            continue
        spec = registration.spec
        roots[registration.name] = (spec.version, {source.value.partition(":")[0], spec.target.partition(":")[0]})
    return roots


def reachable(graph: Mapping[str, set[str]], starts: set[str]) -> set[str]:
    seen, stack = set(), list(starts)
    while stack:
        module = stack.pop()
        if module not in seen:
            seen.add(module)
            stack.extend(graph.get(module, ()))
    return seen


def block_keys() -> dict[str, str]:
    """'methods/blocks/X' -> module name, for every module of methods/blocks/ but its __init__."""
    return {
        path.relative_to(REPO_ROOT).with_suffix("").as_posix(): name
        for name, path in installed_modules().items()
        if name.startswith(BLOCKS_PACKAGE + ".")
    }


def dependents() -> dict[str, dict[str, str]]:
    """'methods/blocks/X' -> {built-in method using it: its version}."""
    graph = import_graph()
    uses = {method: (version, reachable(graph, starts)) for method, (version, starts) in builtin_method_roots().items()}
    return {
        key: {method: version for method, (version, modules) in sorted(uses.items()) if module in modules}
        for key, module in block_keys().items()
    }


# -- fingerprints ------------------------------------------------------------------------------------------------
def canonical(value: Any, digits: int = DIGITS) -> Any:
    """A JSON value that two CPUs agree on: float tensors quantised to `digits` significant digits of their
    largest magnitude, everything else exact."""
    if isinstance(value, Tensor):
        array = value.detach().cpu()
        if array.is_floating_point():
            return _quantised(array.double().numpy(), digits)
        return {"shape": list(array.shape), "dtype": str(array.dtype), "values": array.flatten().tolist()}
    if isinstance(value, float):
        return _quantised(np.array(value, dtype=np.float64), digits)
    if isinstance(value, Mapping):
        return {str(key): canonical(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(item, digits) for item in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def _quantised(array: np.ndarray, digits: int) -> dict:
    finite = np.isfinite(array)
    scale = float(np.abs(array[finite]).max()) if finite.any() else 0.0
    exponent = math.floor(math.log10(scale)) - (digits - 1) if scale > 0 else 0
    steps = np.rint(np.where(finite, array, 0.0) / 10.0**exponent).astype(np.int64).flatten().tolist()
    values = [step if ok else str(raw) for step, ok, raw in zip(steps, finite.flatten(), array.flatten(), strict=True)]
    return {"shape": list(array.shape), "exponent": exponent, "values": values}


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


class Record:
    """What a probe saw: item -> canonical outputs, in the order they were recorded."""

    def __init__(self) -> None:
        self.items: dict[str, list] = {}

    def __call__(self, item: str, *values: Any, digits: int = DIGITS) -> None:
        self.items.setdefault(item, []).extend(canonical(value, digits) for value in values)

    def outcome(self, item: str, function: Callable[[], Any]) -> None:
        """The return value of `function`, or its exception's type and message."""
        try:
            result = function()
        except Exception as exc:  # the probe pins which inputs are rejected, and how
            self(item, f"{type(exc).__name__}: {exc}")
        else:
            self(item, "ok" if result is None else result)


def seeded(factory: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return factory().double()


def randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def labels(*shape: int, classes: int, seed: int = 0) -> Tensor:
    label = torch.randint(0, classes, shape, generator=torch.Generator().manual_seed(seed))
    label[..., :1, :] = 255
    return label


def both_modes(module: nn.Module, *inputs: Any) -> list:
    """Outputs in training mode (batch statistics) and then in evaluation mode."""
    module.train()
    trained = module(*inputs)
    module.eval()
    with torch.no_grad():
        evaluated = module(*inputs)
    return [trained, evaluated]


def probe_attention(record: Record) -> None:
    q, k, v = randn(2, 2, 5, 4, seed=1), randn(2, 2, 6, 4, seed=2), randn(2, 2, 6, 4, seed=3)
    mask = torch.tensor([[True, False, True, True, False, True], [False, False, True, False, False, False]])
    record("attention", attention.attention(q, k, v), attention.attention(q, k, v, mask))
    record(
        "attention_backend",
        *(attention.attention_backend(torch.device("cpu"), d) for d in (torch.float32, torch.float64)),
    )
    record("MultiHeadAttention", seeded(lambda: attention.MultiHeadAttention(8, 2))(randn(2, 5, 8)))
    cross = seeded(lambda: attention.CrossAttention(6, 5, 8, 2))
    queries, context = randn(2, 3, 6, seed=4), randn(2, 4, 5, seed=5)
    keep = torch.tensor([[True, True, False, True], [False, True, False, False]])
    record("CrossAttention", cross(queries, context), cross(queries, context, keep))
    record("TransformerBlock", seeded(lambda: attention.TransformerBlock(8, 2, 16))(randn(2, 5, 8)))


def probe_backbones(record: Record) -> None:
    basic = seeded(lambda: backbones.BasicBlock(8, 8))
    projected = seeded(
        lambda: backbones.BasicBlock(
            4, 8, 2, nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
        )
    )
    record("BasicBlock", *both_modes(basic, randn(2, 8, 6, 6)), *both_modes(projected, randn(2, 4, 6, 6)))
    record("Bottleneck", *both_modes(seeded(lambda: backbones.Bottleneck(16, 4)), randn(2, 16, 6, 6)))
    stages = seeded(lambda: backbones.ResNet(backbones.Bottleneck, [1, 1, 1, 1], width=4, stem=False))
    zeroed = seeded(
        lambda: backbones.ResNet(backbones.BasicBlock, [1, 2, 1, 1], in_channels=2, width=4, zero_init_residual=True)
    )
    record("ResNet", *both_modes(stages, randn(2, 4, 8, 8)), *both_modes(zeroed, randn(2, 2, 32, 32)))
    for depth, channels in ((18, 3), (34, 1), (50, 2)):
        model = seeded(lambda depth=depth, channels=channels: backbones.resnet(depth, in_channels=channels, width=4))
        record("resnet", list(model.channels), *both_modes(model, randn(2, channels, 32, 32, seed=depth)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rgb.pt"
        torch.save(seeded(lambda: backbones.resnet(18, in_channels=3), seed=1).float().state_dict(), path)
        model = seeded(lambda: backbones.resnet(18, in_channels=2), seed=2)
        backbones.load_pretrained(model, path)
        stem, shared = seeded(lambda: common.Stem(1, 64), seed=3), seeded(lambda: backbones.resnet(18, stem=False))
        for part in (stem, shared):
            backbones.load_pretrained_resnet(part, path)
    record("load_pretrained", model.conv1.weight, model.layer4[1].bn2.weight, model.layer4[1].conv2.weight)
    record("load_pretrained_resnet", *both_modes(stem, randn(2, 1, 16, 16)), shared.layer2[0].downsample[0].weight)
    fits = [backbones.pretrained_fits(part) for part in (model, stem, common.Stem(1, 8), backbones.resnet(18, width=8))]
    record("pretrained_fits", torch.tensor(fits, dtype=torch.float64))


def probe_common(record: Record) -> None:
    record("conv_bn_relu", *both_modes(seeded(lambda: common.conv_bn_relu(3, 4)), randn(2, 3, 6, 6)))
    record("conv_bn_relu", *both_modes(seeded(lambda: common.conv_bn_relu(3, 4, kernel=1)), randn(2, 3, 6, 6)))
    record("Stem", *both_modes(seeded(lambda: common.Stem(2, 4)), randn(2, 2, 16, 16)))
    pyramid = [randn(2, c, s, s, seed=c) for c, s in ((4, 16), (8, 8), (16, 4), (32, 2))]
    record("FPNDecoder", *both_modes(seeded(lambda: common.FPNDecoder([4, 8, 16, 32], 8, 6, 5)), pyramid))
    logits = randn(1, 2, 3, 3)
    record("upsample", common.upsample(logits, (7, 5)), common.upsample(logits, (3, 3)))
    available = torch.tensor([[True, False, True], [False, False, True], [True, True, False]])
    values = {0: randn(3, 2, 4, 4, seed=1), 2: randn(3, 2, 4, 4, seed=2)}
    record("masked_mean", common.masked_mean(values, available))
    record("masked_concat", common.masked_concat({0: values[0], 1: values[2]}, available, 3, values[0]))
    for kind in ("all", "subsets-per-sample", "per-pixel"):
        record.outcome("check_sampler", lambda kind=kind: common.check_sampler(kind, "sampler"))
    batch = {"label": torch.zeros(5, 2, 2, dtype=torch.long), "slots": torch.tensor([3, 9, 4, 0, 12])}
    info = TrainStep(step=11, micro=1, seed=7, ignore_index=255, num_classes=3)
    for kind in ("all", "subsets-per-sample", "subsets-per-batch", "bernoulli"):
        record("sampled_availability", common.sampled_availability(kind, batch, info, 3))
        record("sampled_availability", common.sampled_availability(kind, {"label": batch["label"]}, info, 2))
    record("sampled_availability", common.sampled_availability("bernoulli", batch, info, 3, p_drop=0.8))
    record(
        "sampled_availability", common.sampled_availability("subsets-per-sample", batch, info, 3, include_full=False)
    )
    # its log-softmax runs in float32 whatever the input dtype: 4 digits keep CPUs' rounding out of the hash
    record("weighted_ce_dice", common.weighted_ce_dice(randn(2, 4, 6, 6), labels(2, 6, 6, classes=4), 255), digits=4)


MMFORMER_CONFIG = {
    "basic_dims": 2,
    "transformer_dim": 8,
    "heads": 2,
    "mlp_dim": 16,
    "token_grid": 2,
    "sampler": "subsets-per-sample",
    "sep_weight": 0.5,
    "deep_supervision_weight": 0.7,
    "norm": "instance",
    "encoder_entry": "prenorm",
    "region_fusion": "prenorm",
    "bottleneck_fusion": "rfm5",
    "decoder_blocks": "authors",
    "inter_positions": True,
    "inter_layout": "grid",
    "conv_init": "kaiming",
    "sep_rows": "all",
    "sep_bottleneck": "encoder",
}


def probe_mmformer(record: Record) -> None:
    record("PreNormConv", seeded(lambda: mmformer.PreNormConv(3, 4))(randn(2, 3, 8, 8)))
    record("PreNormConv", seeded(lambda: mmformer.PreNormConv(3, 4, stride=2))(randn(2, 3, 8, 8)))
    record("EncoderStage", seeded(lambda: mmformer.EncoderStage(3, 4, 2))(randn(2, 3, 8, 8)))
    record("ModalityEncoder", seeded(lambda: mmformer.ModalityEncoder(2, [2, 4, 8, 16, 32]))(randn(2, 2, 32, 32)))
    tokens = seeded(lambda: mmformer.Tokens(8, 6, 2))
    record("Tokens", tokens(randn(2, 8, 2, 2)), tokens(randn(2, 8, 3, 3)))
    record("RegionFusion", seeded(lambda: mmformer.RegionFusion(4, 2))(randn(2, 8, 6, 6)))
    dims = [2, 4, 8, 16, 32]
    skips = [randn(2, d, 32 // 2**i, 32 // 2**i, seed=i) for i, d in enumerate(dims[:-1])]
    record("Decoder", seeded(lambda: mmformer.Decoder(dims, 3))(skips, randn(2, 32, 2, 2, seed=9)))
    for norm in mmformer.NORMS:
        record("norm_layer", seeded(lambda n=norm: mmformer.norm_layer(n, 4))(randn(2, 4, 6, 6)))
        record("PreNormConv", seeded(lambda n=norm: mmformer.PreNormConv(3, 4, kernel=1, norm=n))(randn(2, 3, 8, 8)))
        record("PreNormFusion", seeded(lambda n=norm: mmformer.PreNormFusion(4, 2, n))(randn(2, 8, 6, 6)))
    record("JointNorm", seeded(mmformer.JointNorm)(randn(2, 4, 6, 6)))
    record(
        "EncoderStage", seeded(lambda: mmformer.EncoderStage(3, 4, 2, entry="prenorm", norm="joint"))(randn(2, 3, 8, 8))
    )
    for fused in (True, False):
        decoder = seeded(lambda f=fused: mmformer.AuthorsDecoder(dims, 3, fused=f, norm="instance"))
        record("AuthorsDecoder", decoder(skips, randn(2, 32, 2, 2, seed=9)))
    record("check_switches", mmformer.check_switches(MMFORMER_CONFIG), sorted(mmformer.SWITCHES))

    model = seeded(lambda: mmformer.MmFormer({"optical": 3, "dsm": 1}, 3, MMFORMER_CONFIG))
    inputs = {"optical": randn(3, 3, 32, 32, seed=1), "dsm": randn(3, 1, 32, 32, seed=2)}
    available = torch.tensor([[True, False], [False, True], [True, True]])
    label = labels(3, 32, 32, classes=3)
    info = TrainStep(step=4, micro=0, seed=3, ignore_index=255, num_classes=3)
    batch = {"inputs": inputs, "label": label}
    model.train()
    record("MmFormer", model(inputs, available), model.training_availability(batch, info))
    features = model.encode_available(inputs, available)
    record("MmFormer", model.segmentation_terms(features, available, label, 255), digits=4)
    record("MmFormer", model.training_loss(batch, info), digits=4)
    model.eval()
    with torch.no_grad():
        record("MmFormer", model(inputs, available))


def probe_pix2pix(record: Record) -> None:
    bottleneck = seeded(lambda: pix2pix.BottleneckTransformer(8, 8, 2, 16, 2))
    record("BottleneckTransformer", bottleneck(randn(2, 8, 2, 2)), bottleneck(randn(2, 8, 3, 3)))
    plain = seeded(lambda: pix2pix.Pix2PixGenerator(3, 2, 2))
    bounded = seeded(
        lambda: pix2pix.Pix2PixGenerator(3, 1, 2, tanh=True, bottleneck=pix2pix.BottleneckTransformer(16, 8, 2, 16, 2))
    )
    record("Pix2PixGenerator", *both_modes(plain, randn(2, 3, 32, 32)), *both_modes(plain, randn(2, 3, 20, 27)))
    record("Pix2PixGenerator", *both_modes(bounded, randn(2, 3, 32, 32)))
    critic = seeded(lambda: pix2pix.PatchDiscriminator(4, 2))
    record("PatchDiscriminator", *both_modes(critic, randn(2, 3, 32, 32, seed=1), randn(2, 1, 32, 32, seed=2)))
    # per-pattern statistics: one pattern per batch in training, then a batch mixing two in evaluation
    norm = seeded(lambda: pix2pix.PatternBatchNorm2d(3, 2))
    norm.groups = pix2pix.pattern_groups(torch.tensor([1, 1]))
    trained = norm(randn(2, 3, 5, 5, seed=3))
    norm.groups = pix2pix.pattern_groups(torch.tensor([0, 0]))
    norm(randn(2, 3, 5, 5, seed=4) + 1.0)
    norm.eval()
    norm.groups = pix2pix.pattern_groups(torch.tensor([0, 1]))
    with torch.no_grad():
        record("PatternBatchNorm2d", trained, norm(randn(2, 3, 5, 5, seed=5)), norm.running_mean, norm.running_var)
    per_pattern = seeded(lambda: pix2pix.Pix2PixGenerator(3, 2, 2, patterns=4))
    per_pattern.train()
    trained = per_pattern(randn(2, 3, 32, 32), torch.tensor([3, 3]))
    per_pattern.eval()
    with torch.no_grad():
        record("PatternBatchNorm2d", trained, per_pattern(randn(2, 3, 32, 32, seed=6), torch.tensor([3, 1])))


class _PairCritic(nn.Module):
    """A conditional critic as `Imputation` calls one: (condition, target) -> patch logits."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 3, stride=2, padding=1)

    def forward(self, condition: Tensor, target: Tensor) -> Tensor:
        return self.conv(torch.cat([condition, target], dim=1))


class _ImputationHost(imputation.Imputation, nn.Module):
    """The least a method must set for the `Imputation` mixin: modalities, generators, critics, availability."""

    def __init__(self) -> None:
        super().__init__()
        self.modalities = {"optical": 2, "dsm": 1, "sar": 1}
        self.modality_names = tuple(self.modalities)
        self.generators = nn.ModuleDict(
            {name: nn.Conv2d(self.condition_channels(name), c, 3, padding=1) for name, c in self.modalities.items()}
        )
        self.discriminators = nn.ModuleDict(
            {name: _PairCritic(self.condition_channels(name) + c) for name, c in self.modalities.items()}
        )
        self.training_availability = lambda batch, info: batch["available"]


def probe_shared_encoder(record: Record) -> None:
    names = ("a", "b")
    stems = {"a": randn(2, 4, 16, 16, seed=1), "b": randn(2, 4, 16, 16, seed=2)}
    outputs = []
    for mode in shared_encoder.SHARED_NORMS:
        backbone = seeded(lambda: backbones.ResNet(backbones.BasicBlock, [1, 1, 1, 1], width=4, stem=False))
        encoder = shared_encoder.SharedEncoder(backbone, names, mode)
        backbone.train()
        trained = encoder.forward_many(stems)
        backbone.eval()
        with torch.no_grad():
            evaluated = encoder.forward_many(stems)
        outputs += [trained["a"], trained["b"], evaluated["a"], evaluated["b"]]
    record("SharedEncoder", *outputs)
    record("SHARED_NORMS", list(shared_encoder.SHARED_NORMS))
    norm = shared_encoder.ModalityNorm(nn.BatchNorm2d(4).double(), names)
    norm.active = "b"
    record("ModalityNorm", norm(randn(2, 4, 3, 3)), norm.norms["b"].running_mean, norm.norms["a"].running_mean)
    wrapped = seeded(lambda: common.conv_bn_relu(3, 4))
    record("privatise_norms", len(shared_encoder.privatise_norms(wrapped, names)))
    backbone = seeded(lambda: backbones.ResNet(backbones.BasicBlock, [1, 1, 1, 1], width=4, stem=False))
    stem_modules = {name: nn.Identity() for name in names}
    specific = {name: (lambda x: [x.sum(1, keepdim=True)]) for name in names}
    encoded = shared_encoder.encode_shared_specific(
        names,
        stems,
        torch.tensor([[True, False], [True, False]]),
        stem_modules,
        shared_encoder.SharedEncoder(backbone, names, "joint"),
        specific,
    )
    record("encode_shared_specific", sorted(encoded), encoded["a"]["shared"], encoded["a"]["specific"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rgb.pt"
        torch.save(seeded(lambda: backbones.resnet(18, width=64), seed=1).float().state_dict(), path)
        stems = {"a": seeded(lambda: common.Stem(1, 64), seed=2).float()}
        narrow = {"a": seeded(lambda: backbones.resnet(18, in_channels=1, width=8), seed=3).float()}
        loaded = shared_encoder.load_pretrained_parts(str(path), stems, narrow, file_depth=18, specific_depth=18)
    record("load_pretrained_parts", loaded, stems["a"].body[0].weight, stems["a"].body[1].running_var)
    config = {"width": 4, "backbone": 18, "specific_backbone": 18, "specific_width": 4, "pretrained": None}
    torch.manual_seed(0)
    built_stems, shared, specific, encoder = shared_encoder.build_shared_specific(
        {"a": 1, "b": 3}, {**config, "shared_norm": "joint"}
    )
    x = {"a": randn(2, 1, 32, 32, seed=4).float(), "b": randn(2, 3, 32, 32, seed=5).float()}
    built = encoder.forward_many({name: built_stems[name](x[name]) for name in x})
    record("build_shared_specific", built["a"], built["b"], specific["b"](x["b"]), list(shared.channels))


def probe_imputation(record: Record) -> None:
    host = seeded(_ImputationHost)
    inputs = {name: randn(4, c, 8, 8, seed=i) for i, (name, c) in enumerate(host.modalities.items())}
    available = torch.tensor([[True, False, True], [False, True, True], [True, True, True], [True, False, False]])
    completed = host.complete(inputs, available)
    batch = {"inputs": inputs, "available": available}
    info = TrainStep(step=0, micro=0, seed=0, ignore_index=255, num_classes=3)
    record(
        "Imputation",
        [host.condition_channels(name) for name in host.modality_names],
        completed,
        host.discriminator_terms(inputs, available, completed),
        host.generator_terms(inputs, available, completed, 10.0),
        host.adversary_loss(batch, info),
        host.complete(inputs, torch.ones_like(available)),
    )
    for config in (
        {"l1_weight": 100.0, "gan_weight": 0.05, "output": "linear"},
        {"l1_weight": -1.0, "gan_weight": 0.05, "output": "tanh"},
        {"l1_weight": 1.0, "gan_weight": 0.0, "output": "sigmoid"},
    ):
        record.outcome("check_gan_config", lambda config=config: imputation.check_gan_config(config))


PROBES: dict[str, Callable[[Record], None]] = {
    "methods/blocks/attention": probe_attention,
    "methods/blocks/backbones": probe_backbones,
    "methods/blocks/common": probe_common,
    "methods/blocks/imputation": probe_imputation,
    "methods/blocks/mmformer": probe_mmformer,
    "methods/blocks/shared_encoder": probe_shared_encoder,
    "methods/blocks/pix2pix": probe_pix2pix,
}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def public_names(module_name: str) -> set[str]:
    """Classes and functions a block defines (not imports) under a public name."""
    module = importlib.import_module(module_name)
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and callable(value)  # classes, functions, and functions behind decorators such as lru_cache
        and getattr(value, "__module__", None) == module_name
    }


def fingerprint(key: str) -> dict[str, Any]:
    if key not in PROBES:
        raise KeyError(f"{key} has no probe: add one to PROBES in tests/test_shared_blocks.py")
    record = Record()
    with one_thread(), torch.random.fork_rng(devices=[]):
        PROBES[key](record)
    items = {name: digest(outputs) for name, outputs in sorted(record.items.items())}
    return {"fingerprint": digest(items), "items": items}


def current_state(only: set[str] | None = None) -> dict[str, dict[str, Any]]:
    users = dependents()
    return {
        key: {**fingerprint(key), "dependents": users[key]}
        for key in sorted(block_keys())
        if only is None or key in only
    }


# -- comparing with the fixture ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    block: str
    message: str
    needs_bump: bool  # True: a dependent's version must change before the fixture may be regenerated


def _names(names: list[str]) -> str:
    names = sorted(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def problems(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[Problem]:
    """One problem per block whose stored entry does not match, each one line."""
    found = []
    for block in sorted(current.keys() - stored.keys()):
        found.append(Problem(block, f"{block} is a shared block without a stored entry; add it with {UPDATE}", False))
    for block in sorted(stored.keys() - current.keys()):
        found.append(
            Problem(block, f"{block} has a stored entry but no longer exists; regenerate with {UPDATE}", False)
        )
    for block in sorted(current.keys() & stored.keys()):
        was, now = stored[block], current[block]
        changed = sorted(
            name for name in was["items"].keys() & now["items"].keys() if was["items"][name] != now["items"][name]
        )
        unbumped = [method for method, version in now["dependents"].items() if was["dependents"].get(method) == version]
        if changed and unbumped:
            found.append(
                Problem(
                    block,
                    f"{block} changed numerically ({', '.join(changed)}); bump the version of {_names(unbumped)} "
                    f"and regenerate with {UPDATE}",
                    True,
                )
            )
            continue
        reasons = []
        if changed:
            reasons.append(f"{', '.join(changed)} changed and every dependent's version was bumped")
        if added := sorted(now["items"].keys() - was["items"].keys()):
            reasons.append(f"new {', '.join(added)}")
        if removed := sorted(was["items"].keys() - now["items"].keys()):
            reasons.append(f"{', '.join(removed)} removed")
        if new_users := sorted(now["dependents"].keys() - was["dependents"].keys()):
            reasons.append(f"now used by {_names(new_users)}, without a stored entry")
        if former := sorted(was["dependents"].keys() - now["dependents"].keys()):
            reasons.append(f"no longer used by {_names(former)}")
        if bumped := sorted(
            f"{m} {was['dependents'][m]} -> {v}"
            for m, v in now["dependents"].items()
            if m in was["dependents"] and was["dependents"][m] != v
        ):
            if not changed:
                reasons.append(f"versions changed ({', '.join(bumped)})")
        if reasons:
            found.append(
                Problem(
                    block, f"{block}: stored entry out of date ({'; '.join(reasons)}); regenerate with {UPDATE}", False
                )
            )
    return found


def load_fixture(path: Path = FIXTURE) -> dict[str, Any]:
    return json.loads(path.read_text())["blocks"] if path.exists() else {}


def update(path: Path = FIXTURE, current: Mapping[str, Any] | None = None) -> list[Problem]:
    """Write the fixture from the current state, unless a changed block still has an unbumped dependent
    (those problems are returned and nothing is written)."""
    current = current_state() if current is None else current
    blocking = [problem for problem in problems(load_fixture(path), current) if problem.needs_bump]
    if blocking:
        return blocking
    document = {
        "about": "Fingerprints of methods/blocks/* and the versions of the methods using them; "
        f"written by {UPDATE} (see tests/test_shared_blocks.py).",
        "blocks": current,
    }
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return []


# -- tests -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def state() -> dict[str, dict[str, Any]]:
    return current_state()


def test_every_block_matches_its_stored_fingerprint_and_dependents(state):
    found = problems(load_fixture(), state)
    if found:
        pytest.fail("\n".join(problem.message for problem in found), pytrace=False)


def test_every_public_name_of_every_block_has_a_probe(state):
    for key, module_name in block_keys().items():
        assert key in PROBES, f"{key} has no probe: add one to PROBES in tests/test_shared_blocks.py"
        exempt = set(NOT_NUMERICAL.get(key, {}))
        missing = public_names(module_name) - exempt - set(state[key]["items"])
        assert not missing, f"{key} defines {_names(list(missing))} without a probe in tests/test_shared_blocks.py"
        stale = exempt - public_names(module_name)
        assert not stale, f"NOT_NUMERICAL names {_names(list(stale))}, which {key} does not define"


def test_dependents_come_from_the_imports(state):
    users = {key: set(entry["dependents"]) for key, entry in state.items()}
    assert {"mmformer", "gemmnet", "dis2"} <= users["methods/blocks/mmformer"]
    assert {"cgan", "gemmnet"} <= users["methods/blocks/pix2pix"] and "ae" not in users["methods/blocks/pix2pix"]
    assert "unimodal" not in users["methods/blocks/mmformer"] and "unimodal" in users["methods/blocks/backbones"]
    assert users["methods/blocks/attention"] >= users["methods/blocks/mmformer"]  # mmformer uses attention
    for entry in state.values():
        for method, version in entry["dependents"].items():
            assert METHODS.get(method).version == version


def test_a_perturbed_block_fails_naming_every_dependent_and_update_refuses(state, monkeypatch, tmp_path):
    forward = common.FPNDecoder.forward
    monkeypatch.setattr(common.FPNDecoder, "forward", lambda self, pyramid: forward(self, pyramid) * 1.001)
    key = "methods/blocks/common"
    perturbed = current_state(only={key})
    assert perturbed[key]["items"]["FPNDecoder"] != state[key]["items"]["FPNDecoder"]
    assert {k: v for k, v in perturbed[key]["items"].items() if k != "FPNDecoder"} == {
        k: v for k, v in state[key]["items"].items() if k != "FPNDecoder"
    }
    (problem,) = problems({key: state[key]}, perturbed)
    users = sorted(state[key]["dependents"])
    assert len(users) > 2 and problem.needs_bump
    assert problem.message == (
        f"{key} changed numerically (FPNDecoder); bump the version of {', '.join(users[:-1])} and {users[-1]} "
        f"and regenerate with {UPDATE}"
    )
    assert "\n" not in problem.message

    fixture = tmp_path / "shared_blocks.json"
    fixture.write_text(json.dumps({"blocks": {key: state[key]}}))
    assert update(fixture, perturbed) == [problem] and json.loads(fixture.read_text())["blocks"][key] == state[key]

    # bumping all but one dependent still names that one; bumping every one only asks for regeneration
    bumped = json.loads(json.dumps(perturbed))
    bumped[key]["dependents"] = {method: version + ".1" for method, version in perturbed[key]["dependents"].items()}
    bumped[key]["dependents"][users[0]] = perturbed[key]["dependents"][users[0]]
    (problem,) = problems({key: state[key]}, bumped)
    assert problem.needs_bump and f"bump the version of {users[0]} and regenerate" in problem.message
    bumped[key]["dependents"][users[0]] += ".1"
    (problem,) = problems({key: state[key]}, bumped)
    assert not problem.needs_bump and "every dependent's version was bumped" in problem.message
    assert update(fixture, bumped) == [] and problems(load_fixture(fixture), bumped) == []


def test_new_blocks_dependents_and_version_changes_need_a_stored_entry(state):
    key = "methods/blocks/mmformer"
    without_block = {k: v for k, v in state.items() if k != key}
    assert [p.message for p in problems(without_block, state)] == [
        f"{key} is a shared block without a stored entry; add it with {UPDATE}"
    ]
    stored = json.loads(json.dumps(state))
    del stored[key]["dependents"]["dis2"]
    (problem,) = problems(stored, state)
    assert "now used by dis2, without a stored entry" in problem.message and not problem.needs_bump
    stored = json.loads(json.dumps(state))
    stored[key]["dependents"]["gemmnet"] = "0"
    (problem,) = problems(stored, state)
    assert f"versions changed (gemmnet 0 -> {state[key]['dependents']['gemmnet']})" in problem.message
    stored = json.loads(json.dumps(state))
    del stored[key]["items"]["RegionFusion"]
    (problem,) = problems(stored, state)
    assert "new RegionFusion" in problem.message


def test_fingerprints_ignore_rounding_but_not_changes():
    x = torch.linspace(-3.0, 7.0, 50, dtype=torch.float64)
    assert digest(canonical(x)) == digest(canonical(x * (1 + 1e-12)))
    assert digest(canonical(x)) != digest(canonical(x * (1 + 1e-3)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help=f"rewrite {FIXTURE.relative_to(REPO_ROOT)}")
    args = parser.parse_args(argv)
    current = current_state()
    if not args.update:
        found = problems(load_fixture(), current)
        print("\n".join(problem.message for problem in found) or "shared blocks: fixture up to date")
        return 1 if found else 0
    blocking = update(FIXTURE, current)
    for problem in blocking:
        print(problem.message, file=sys.stderr)
    if not blocking:
        print(f"wrote {FIXTURE.relative_to(REPO_ROOT)}")
    return 1 if blocking else 0


if __name__ == "__main__":
    sys.exit(main())
