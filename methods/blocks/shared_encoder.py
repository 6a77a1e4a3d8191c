"""A shared encoder run on several modalities, with a choice of how its BatchNorm layers see them.

STARS and ShaSpec run one ResNet on every modality (per-modality stems map the channel counts). A
BatchNorm inside it then has three reasonable behaviours, selected by `method.shared_norm`:

- `per_call` (mmbench's first version): one call per modality, so training normalises each modality
  with its *own* batch statistics while the running averages used at evaluation blend all modalities:
  train and test normalise differently.
- `joint`: the stem outputs of every modality encoded in the step are concatenated on the batch axis
  and pass the shared encoder once (what ShaSpec's code does: `DualNet_SS.py` stacks the modalities
  before its shared encoder), so the batch statistics of training are the same mixture the running
  averages hold at evaluation.
- `per_modality`: the convolutions stay shared, but every BatchNorm gets a private copy (statistics
  and affine parameters) per modality, so each modality is normalised by its own statistics in
  training and in evaluation (a domain-specific BN; our reconstruction, no STARS/ShaSpec source).

In evaluation mode `per_call` and `joint` compute the same function (BatchNorm then uses running
statistics only); they differ in what training learns. Checkpoints of `per_call` and `joint` share
parameter names; `per_modality` adds one set per modality.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mmbench.methods.blocks.backbones import ResNet, load_pretrained_resnet, pretrained_fits, resnet
from mmbench.methods.blocks.common import Stem

SHARED_NORMS = ("joint", "per_call", "per_modality")


class ModalityNorm(nn.Module):
    """A BatchNorm with one private copy per modality; `active` names the copy the next call uses."""

    def __init__(self, norm: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.norms = nn.ModuleDict({name: copy.deepcopy(norm) for name in names})
        self.active: str | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.active is None:
            raise RuntimeError("ModalityNorm called without an active modality (SharedEncoder sets it)")
        return self.norms[self.active](x)


def privatise_norms(module: nn.Module, names: Sequence[str]) -> list[ModalityNorm]:
    """Replace every BatchNorm2d inside `module` by a `ModalityNorm` (copies keep loaded weights)."""
    replaced: list[ModalityNorm] = []
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                private = ModalityNorm(child, names)
                setattr(parent, child_name, private)
                replaced.append(private)
    return replaced


class SharedEncoder:
    """Runs `backbone.forward_stages` for several modalities with the BatchNorm behaviour of `mode`.

    Not a module: the backbone stays registered where the method put it (so `per_call` and `joint`
    checkpoints keep the parameter names of mmbench's first version); `per_modality` swaps the
    backbone's BatchNorms for `ModalityNorm`s in place. `backbone` must expose
    `forward_stages(x) -> list[Tensor]` (mmbench's ResNet does).
    """

    def __init__(self, backbone: nn.Module, names: Sequence[str], mode: str) -> None:
        if mode not in SHARED_NORMS:
            raise ValueError(f"shared_norm must be one of {SHARED_NORMS}, got {mode!r}")
        self.backbone = backbone
        self.mode = mode
        self._private = privatise_norms(backbone, names) if mode == "per_modality" else []

    def forward_one(self, name: str, x: Tensor) -> list[Tensor]:
        """The pyramid of one modality's stem output (one call; `joint` batches via `forward_many`)."""
        for norm in self._private:
            norm.active = name
        return self.backbone.forward_stages(x)

    def forward_many(self, stems: Mapping[str, Tensor]) -> dict[str, list[Tensor]]:
        """The pyramid of every modality; in `joint` mode one pass over the concatenated batch."""
        if self.mode != "joint" or len(stems) < 2:
            return {name: self.forward_one(name, x) for name, x in stems.items()}
        names = list(stems)
        sizes = [stems[name].shape[0] for name in names]
        stages = self.backbone.forward_stages(torch.cat([stems[name] for name in names]))
        split = [torch.split(stage, sizes) for stage in stages]
        return {name: [parts[i] for parts in split] for i, name in enumerate(names)}


def encode_shared_specific(
    names: Sequence[str],
    inputs: Mapping[str, Tensor],
    available: Tensor,
    stems: Mapping[str, nn.Module],
    shared: SharedEncoder,
    specific: Mapping[str, nn.Module],
) -> dict[str, dict[str, list[Tensor]]]:
    """Shared and specific pyramids of every modality at least one sample has (the split interface's
    `features`), the shared ones through `shared.forward_many` so that `joint` batches them."""
    present = [name for index, name in enumerate(names) if bool(available[:, index].any())]
    pyramids = shared.forward_many({name: stems[name](inputs[name]) for name in present})
    return {name: {"shared": pyramids[name], "specific": specific[name](inputs[name])} for name in present}


def load_pretrained_parts(
    path: str,
    stems: Mapping[str, nn.Module],
    specific: Mapping[str, nn.Module],
    *,
    file_depth: int,
    specific_depth: int,
) -> list[str]:
    """Load a torchvision-layout ResNet file into the per-modality stems and, where they fit, the specific
    encoders (the shared encoder loads it through `resnet(..., pretrained=)`); returns what was loaded.

    Stems have the shared encoder's width, so they always fit when it does (docs/pretrained.md gives the
    channel rule). A specific encoder loads only when it is 64 wide and as deep as the file
    (`specific_backbone == backbone`); otherwise it starts random, as docs/methods/stars.md states.
    """
    loaded = []
    for name, stem in stems.items():
        load_pretrained_resnet(stem, path)
        loaded.append(f"stems.{name}")
    if specific_depth == file_depth:
        for name, encoder in specific.items():
            if pretrained_fits(encoder):
                load_pretrained_resnet(encoder, path)
                loaded.append(f"specific.{name}")
    return loaded


def build_shared_specific(
    modalities: Mapping[str, int], config: Mapping[str, object]
) -> tuple[nn.ModuleDict, ResNet, nn.ModuleDict, SharedEncoder]:
    """The encoders STARS and ShaSpec share: per-modality stems, one stem-less shared ResNet, one specific
    ResNet per modality (built in that order, so seeded initialisation is the same for both methods), the
    `pretrained` file loaded into every part that fits, and the `SharedEncoder` of `shared_norm` (made
    last: `per_modality` copies the norms, loaded weights included). Reads `width`, `backbone`,
    `specific_backbone`, `specific_width`, `pretrained` and `shared_norm` from the method's config."""
    pretrained = config["pretrained"]
    stems = nn.ModuleDict({name: Stem(channels, config["width"]) for name, channels in modalities.items()})
    shared = resnet(config["backbone"], width=config["width"], stem=False, pretrained=pretrained)
    specific = nn.ModuleDict(
        {
            name: resnet(config["specific_backbone"], in_channels=channels, width=config["specific_width"])
            for name, channels in modalities.items()
        }
    )
    if pretrained:
        load_pretrained_parts(
            str(pretrained),
            stems,
            specific,
            file_depth=int(config["backbone"]),
            specific_depth=int(config["specific_backbone"]),
        )
    return stems, shared, specific, SharedEncoder(shared, list(modalities), str(config["shared_norm"]))
