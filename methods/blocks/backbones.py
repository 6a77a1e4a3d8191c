"""ResNet-18/34/50 encoders returning the C2..C5 feature pyramid, written in plain torch.

Why not torchvision: mmbench must not depend on it (it pins its own torch build), and the benchmark's
methods need things torchvision's classifier does not offer: a stem for any number of input channels
(SAR and DSM have one, optical three or four), a `width` knob for tiny CPU test models, and a way to
build the residual stages *without* a stem so that several per-modality stems can share one encoder.

The layout is the standard ResNet v1.5 one (the stride of a bottleneck sits on its 3x3 conv) and the
module names follow torchvision's key layout (`conv1`, `bn1`, `layer1.0.conv1`, ...,
`layer2.0.downsample.0`), so a torchvision ImageNet `state_dict` saved to a local file loads directly
through `pretrained=`; nothing is ever downloaded. `load_pretrained_resnet` loads the same file into any
part with a torchvision counterpart: a whole ResNet, the residual stages of a stem-less shared encoder, or
a per-modality stem (`mmbench.methods.blocks.common.Stem`); docs/pretrained.md lists what each method loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from mmbench.errors import ConfigError

__all__ = [
    "PRETRAINED_WIDTH",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "load_pretrained",
    "load_pretrained_resnet",
    "pretrained_fits",
    "resnet",
]

# depth -> (block type, blocks per stage); the standard ImageNet configurations.
_CONFIGS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}

# The width the published ImageNet weights were trained with; other widths have other tensor shapes.
PRETRAINED_WIDTH = 64
_STANDARD_WIDTH = PRETRAINED_WIDTH
# How many offending keys an error message lists before it says "...".
_KEYS_SHOWN = 5


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # No bias: every conv is followed by a BatchNorm whose shift makes a bias redundant.
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut; used by ResNet-18/34."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch (zeroed by `zero_init_residual`)."""
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, v1.5), 1x1 expand by 4; used by ResNet-50.

    The stride sits on the 3x3 conv rather than the first 1x1 (v1) because a strided 1x1 discards three
    quarters of its input; this is also the layout of torchvision's current weights.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch (zeroed by `zero_init_residual`)."""
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """A ResNet encoder without pooling head or classifier, returning [C2, C3, C4, C5].

    `channels` holds the output channels of C2..C5 and `strides` their strides (4, 8, 16, 32) relative
    to the stem's input, so decoders can be built without running a dummy forward pass.

    With `stem=False` the module has no `conv1`/`bn1`/max-pool and `forward` takes a stride-4 tensor of
    `width` channels: that is the shape of a shared encoder fed by separate per-modality stems.
    """

    strides: tuple[int, int, int, int] = (4, 8, 16, 32)

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        in_channels: int = 3,
        width: int = 64,
        stem: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"a ResNet has four stages, got layer counts {list(layers)}")
        self.in_channels = in_channels
        self.width = width
        self.has_stem = stem
        if stem:
            self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self._inplanes = width
        self.layer1 = self._make_stage(block, width, layers[0], stride=1)
        self.layer2 = self._make_stage(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_stage(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_stage(block, width * 8, layers[3], stride=2)
        e = block.expansion
        self.channels: tuple[int, int, int, int] = (width * e, width * 2 * e, width * 4 * e, width * 8 * e)
        self._init_weights(zero_init_residual)

    def _make_stage(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        downsample = None
        out_channels = planes * block.expansion
        if stride != 1 or self._inplanes != out_channels:
            # Projection shortcut only where the shape changes (option B of the ResNet paper).
            downsample = nn.Sequential(_conv1x1(self._inplanes, out_channels, stride), nn.BatchNorm2d(out_channels))
        stage = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = out_channels
        stage += [block(out_channels, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # He init suits ReLU networks trained from scratch; BN starts as identity.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            # Each block then starts as the identity, which helps large-batch training (Goyal et al. 2017).
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(module.last_bn.weight)

    def forward_stem(self, x: Tensor) -> Tensor:
        """conv7x7/2 - BN - ReLU - maxpool3x3/2: `in_channels` at stride 1 -> `width` at stride 4."""
        if not self.has_stem:
            raise RuntimeError("this ResNet was built with stem=False; run your own stem, then forward_stages")
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Apply layer1..layer4 to a stem output (stride 4, `width` channels); returns [C2, C3, C4, C5]."""
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]

    def forward(self, x: Tensor) -> list[Tensor]:
        """[C2 (stride 4), C3 (8), C4 (16), C5 (32)]; without a stem, `x` must already be the stem output."""
        if self.has_stem:
            x = self.forward_stem(x)
        return self.forward_stages(x)


def resnet(
    depth: int,
    *,
    in_channels: int = 3,
    width: int = 64,
    pretrained: str | Path | None = None,
    stem: bool = True,
    zero_init_residual: bool = False,
) -> ResNet:
    """Build a ResNet-`depth` encoder (18, 34 or 50), optionally loading local ImageNet weights.

    `width` is the stem's output channels and the first stage's width; later stages double it (so 64 is
    the standard network and e.g. 16 a tiny CPU one). `pretrained` is a path to a torchvision-layout
    `state_dict`; see `load_pretrained` for how it is checked and how a stem with `in_channels != 3`
    is filled from RGB weights.
    """
    if isinstance(depth, bool) or depth not in _CONFIGS:
        raise ConfigError(f"unsupported ResNet depth {depth!r}; choose one of {sorted(_CONFIGS)}")
    for name, value in (("in_channels", in_channels), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"ResNet {name} must be a positive integer, got {value!r}")
    kind, layers = _CONFIGS[depth]
    model = ResNet(
        _BLOCKS[kind],
        layers,
        in_channels=in_channels,
        width=width,
        stem=stem,
        zero_init_residual=zero_init_residual,
    )
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


def _first_keys(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_KEYS_SHOWN])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _KEYS_SHOWN else "")


def _adapt_stem_weight(weight: Tensor, in_channels: int) -> Tensor:
    """RGB stem kernel (out, 3, k, k) -> (out, in_channels, k, k): mean over RGB, repeated per channel.

    Averaging keeps the filters' spatial structure (edges, blobs), which is what transfers to SAR or DSM,
    and is the common convention (e.g. timm's single-channel adaptation); it does not try to preserve
    activation magnitude for in_channels > 3, which the following BatchNorm re-normalises anyway.
    """
    return weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)


def _check_width(width: int, path: Path, what: str) -> None:
    if width != PRETRAINED_WIDTH:
        raise ConfigError(
            f"cannot load pretrained weights {path} into {what} of width {width}: standard ResNet "
            f"weights have width {PRETRAINED_WIDTH} and every tensor shape depends on it; use width={PRETRAINED_WIDTH}"
        )


def _read_state_dict(path: Path) -> Mapping[str, Tensor]:
    """The tensors of a local `state_dict` file, read without executing pickled code; one-line errors."""
    if not path.is_file():
        raise ConfigError(f"pretrained weights file {path} does not exist; give the path of a local state_dict file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to read is a problem with the user's file, reported as such
        # torch's own message advises weights_only=False, which we deliberately never do; keep only its type.
        raise ConfigError(
            f"cannot read pretrained weights {path} as a tensors-only torch state_dict ({type(exc).__name__}); "
            f"expected a file written by torch.save(model.state_dict())"
        ) from exc
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ConfigError(
            f"pretrained weights {path} do not hold a plain state_dict (a mapping of names to tensors); "
            f"save model.state_dict() rather than a checkpoint or a whole model"
        )
    return loaded


def pretrained_fits(module: nn.Module) -> bool:
    """Whether `load_pretrained_resnet` can fill `module` by its width: a `ResNet` or a per-modality stem
    whose width is `PRETRAINED_WIDTH` (64). Methods use it to load what fits and leave narrower parts
    (e.g. CPU-sized specific encoders) at their random initialisation, as docs/pretrained.md states."""
    from mmbench.methods.blocks.common import Stem

    if isinstance(module, ResNet):
        return module.width == PRETRAINED_WIDTH
    if isinstance(module, Stem):
        return module.body[0].out_channels == PRETRAINED_WIDTH
    return False


def load_pretrained_resnet(module: nn.Module, path: str | Path) -> None:
    """Load a local torchvision-layout ResNet `state_dict` into `module`, in place: the public entry point
    for methods (methods/stars, methods/shaspec), so every part with a torchvision counterpart can start
    from the same file.

    - a `ResNet` (built by `resnet`): everything, as `load_pretrained` does; a stem-less one (a shared
      encoder fed by per-modality stems) takes layers 1-4 only. The file's depth must be the module's.
    - a per-modality stem (`mmbench.methods.blocks.common.Stem`): `conv1`/`bn1` of the file (every depth
      has the same stem), with the one rule for input channels of `_adapt_stem_weight`: 3 channels are
      copied, any other count gets the RGB kernel averaged over its input channels and repeated.

    The part must have width `PRETRAINED_WIDTH` (`pretrained_fits`); anything else is a one-line
    `ConfigError` naming the file, as is a file that does not match. Load before `privatise_norms`
    (blocks/shared_encoder.py) turns BatchNorms into per-modality copies: the copies keep loaded weights.
    """
    from mmbench.methods.blocks.common import Stem

    if isinstance(module, ResNet):
        load_pretrained(module, path)
        return
    if not isinstance(module, Stem):
        raise TypeError(
            f"load_pretrained_resnet loads a ResNet or a Stem (mmbench.methods.blocks), not a {type(module).__name__}"
        )
    path = Path(path)
    conv, norm = module.body[0], module.body[1]
    _check_width(conv.out_channels, path, "a stem")
    loaded = _read_state_dict(path)
    target = {f"body.0.{k}": v for k, v in conv.state_dict().items()}
    target.update({f"body.1.{k}": v for k, v in norm.state_dict().items()})
    names = {"conv1.weight": "body.0.weight"}
    names.update({f"bn1.{k}": f"body.1.{k}" for k in norm.state_dict()})
    missing = [k for k in names if k not in loaded and not k.endswith("num_batches_tracked")]
    if missing:
        raise ConfigError(
            f"pretrained weights {path} have no ResNet stem (missing keys: {_first_keys(missing)}); "
            "give a torchvision-layout ResNet state_dict"
        )
    source = {names[k]: v for k, v in loaded.items() if k in names}
    weight = source["body.0.weight"]
    if weight.ndim == 4 and weight.shape[1] == 3 and conv.in_channels != 3:
        source["body.0.weight"] = _adapt_stem_weight(weight, conv.in_channels)
    _load_same_shapes(module, source, target, path, "this stem")


def _load_same_shapes(
    module: nn.Module, source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], path: Path, part: str
) -> None:
    """Copy `source` into `module` (keys already checked), refusing in one line any tensor whose shape differs."""
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in source.items() if v.shape != target[k].shape
    ]
    if mismatched:
        raise ConfigError(
            f"pretrained weights {path} have tensors of the wrong shape for {part} (file vs model): "
            f"{_first_keys(mismatched)}"
        )
    with torch.no_grad():
        module.load_state_dict(source, strict=False)


def load_pretrained(model: ResNet, path: str | Path) -> None:
    """Load a torchvision-layout ResNet `state_dict` from the local file `path` into `model`, in place.

    The file is read with `torch.load(path, map_location="cpu", weights_only=True)`, so it is never
    executed as a pickle of arbitrary objects. `fc.*` (the ImageNet classifier) is ignored; so are
    `conv1.*`/`bn1.*` when the model was built with `stem=False` (its stems live elsewhere). Missing
    BatchNorm `num_batches_tracked` counters (absent from older checkpoints) are tolerated. Any other
    missing or unexpected key, or a shape mismatch, raises `ConfigError` naming the file and the first
    few keys, because a partly loaded backbone would silently train from a half-random start.

    When the model's stem has `in_channels != 3` and the file's `conv1.weight` has 3 input channels,
    the RGB kernel is averaged over its input channels and repeated `in_channels` times (see
    `_adapt_stem_weight`). Weights can only be loaded into a `width=64` model, the width they were
    trained at: every tensor's shape depends on it.
    """
    path = Path(path)
    _check_width(model.width, path, "a ResNet")
    loaded = _read_state_dict(path)

    ignored_prefixes = ("fc.",) if model.has_stem else ("fc.", "conv1.", "bn1.")
    source = {k: v for k, v in loaded.items() if not k.startswith(ignored_prefixes)}
    target = model.state_dict()
    unexpected = [k for k in source if k not in target]
    missing = [k for k in target if k not in source and not k.endswith("num_batches_tracked")]
    if unexpected or missing:
        parts = []
        if missing:
            parts.append(f"missing keys: {_first_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_first_keys(unexpected)}")
        raise ConfigError(
            f"pretrained weights {path} do not match a torchvision-layout ResNet of this depth ({'; '.join(parts)})"
        )

    if model.has_stem and "conv1.weight" in source:
        weight = source["conv1.weight"]
        if weight.ndim == 4 and weight.shape[1] == 3 and model.in_channels != 3:
            source["conv1.weight"] = _adapt_stem_weight(weight, model.in_channels)

    _load_same_shapes(model, source, target, path, "this ResNet")
