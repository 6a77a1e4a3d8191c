"""DIS2 (Kieu et al., arXiv 2601.13502): disentangled compensation + distillation + class-wise decoding.

Follows the authors' `DLKD_ver4` (github.com/nhikieu/DIS2), written for any M >= 2 modalities:

- per modality a pix2pix encoder E_m (4 x conv k4 s2 to 1/16) with a U-Net head giving a unimodal
  auxiliary prediction; per ordered pair (s -> t) a compensation encoder C_{s->t} of the same shape
  (the authors' `rgb_else` / `ndsm_else`). A missing modality t is stood in for by the mean of
  C_{s->t}(x_s) over the sample's available sources s (with M = 2 the authors' single compensation encoder);
- per availability pattern a branch = hierarchical hybrid fusion (HF: the authors' `fusion_prenorm_2d` at
  levels 1-3, three pre-norm convs with a joint non-affine norm (`fusion`, `fusion_norm`), with a
  strided residual chain, a transformer at level 4 over a fusion token, every modality's tokens and the
  attention-pooled level 3) + class-wise latent modelling (CFLM: class queries attend over the fused
  level 4, one shared U-Net path per class, per-class deep-supervision heads, K maps merged into the
  penultimate features). Samples are routed to their pattern's branch, so one batch may mix patterns;
  `branches: shared` keeps one full and one student branch instead;
- training: the full branch (teacher) runs on the real data of every sample, the sample's missing
  pattern (student) on real + compensation features; KD from the detached teacher (pooled fused
  features, global token, penultimate features, temperature-scaled logits) after a warm-up, and an
  orthogonality loss between compensation and own features of each source.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.errors import ConfigError
from mmbench.method import SegmentationMethod, TrainStep
from mmbench.methods.blocks.attention import TransformerBlock
from mmbench.methods.blocks.common import masked_mean, sampled_availability, upsample, weighted_ce_dice
from mmbench.methods.blocks.mmformer import PreNormConv, PreNormFusion, RegionFusion

SAMPLERS = ("subsets-per-sample", "subsets-per-batch")  # both only draw patterns with a missing modality
BRANCHES = ("per-scenario", "shared")
FUSIONS = ("prenorm", "v1")  # prenorm: the authors' `fusion_prenorm_2d`; v1: version 1's `RegionFusion`
FUSION_NORMS = ("joint", "per_channel")
FUSED_LEVELS = 3  # levels fused by convolution (and pooled for KD / orthogonality); level 4 by the transformer


def down(inp: int, out: int, norm: bool = True) -> nn.Module:
    """The authors' `cnn_block`: conv k4 s2 p1 (halves the size, floor), BatchNorm unless first/last."""
    conv = nn.Conv2d(inp, out, 4, stride=2, padding=1)
    return nn.Sequential(conv, nn.BatchNorm2d(out)) if norm else conv


class Pix2PixEncoder(nn.Module):
    """e1..e4 at 1/2..1/16; LeakyReLU(0.2) between stages, features returned before activation."""

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            [
                down(in_channels, widths[0], norm=False),
                down(widths[0], widths[1]),
                down(widths[1], widths[2]),
                down(widths[2], widths[3], norm=False),
            ]
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x if index == 0 else F.leaky_relu(x, 0.2))
            features.append(x)
        return features


class UniHead(nn.Module):
    """The encoder's U-Net decoder (transposed convs with skips) for the unimodal auxiliary prediction."""

    def __init__(self, widths: Sequence[int], num_classes: int) -> None:
        super().__init__()

        def up(inp: int, out: int) -> nn.Module:
            return nn.Sequential(nn.ConvTranspose2d(inp, out, 4, stride=2, padding=1), nn.BatchNorm2d(out))

        self.ups = nn.ModuleList([up(widths[3], widths[2]), up(2 * widths[2], widths[1]), up(2 * widths[1], widths[0])])
        self.out = nn.ConvTranspose2d(2 * widths[0], num_classes, 4, stride=2, padding=1)

    def forward(self, features: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        x = features[3]
        for block, skip in zip(self.ups, reversed(features[:3]), strict=True):
            x = torch.cat([upsample(block(F.relu(x)), skip.shape[-2:]), skip], dim=1)  # resize: odd crop sizes
        return upsample(self.out(F.relu(x)), size)


class AttnPool(nn.Module):
    """The authors' `AttnPoolToToken`: an MLP scores every position, softmax over positions, weighted sum."""

    def __init__(self, channels: int, hidden: int, out: int | None = None) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.proj = nn.Linear(channels, out) if out is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(2).transpose(1, 2)  # (B, N, C)
        weights = torch.softmax(self.score(flat), dim=1)
        return self.proj((flat * weights).sum(1))


class LevelPools(nn.Module):
    """One attention pool per fused level (the authors' `HierarchicalAttnPool`)."""

    def __init__(self, widths: Sequence[int], hidden: int) -> None:
        super().__init__()
        self.pools = nn.ModuleList([AttnPool(w, hidden) for w in widths[:FUSED_LEVELS]])

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        return [pool(x) for pool, x in zip(self.pools, features, strict=False)]


def fusion_block(channels: int, modalities: int, config: Mapping[str, Any]) -> nn.Module:
    if config["fusion"] == "v1":
        return RegionFusion(channels, modalities)
    # `joint`: the authors' InstanceNorm3d read over (C, H, W) per sample; `per_channel`: version 1's affine norm
    return PreNormFusion(channels, modalities, "joint" if config["fusion_norm"] == "joint" else "affine")


class HierarchicalFusion(nn.Module):
    """HF: convolutional fusion at levels 1-3, transformer fusion at level 4 (plus a global fusion token)."""

    def __init__(self, widths: Sequence[int], modalities: int, config: Mapping[str, Any]) -> None:
        super().__init__()
        dim, grid = config["transformer_dim"], config["token_grid"]
        self.fuse = nn.ModuleList([fusion_block(w, modalities, config) for w in widths[:FUSED_LEVELS]])
        self.residual = nn.ModuleList([down(widths[i], widths[i + 1]) for i in range(FUSED_LEVELS - 1)])
        self.pool_e3 = AttnPool(widths[2], config["pool_hidden"], out=dim)
        self.to_tokens = nn.Conv2d(widths[3], dim, 1) if dim != widths[3] else nn.Identity()
        self.fusion_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(modalities, dim, grid, grid))  # zeros, as the authors
        self.blocks = nn.Sequential(
            *[TransformerBlock(dim, config["heads"], config["mlp_dim"]) for _ in range(config["transformer_layers"])]
        )
        self.norm = nn.LayerNorm(dim)
        self.unify = nn.Conv2d(modalities * dim, widths[3], 1)

    def forward(self, features: Sequence[Sequence[Tensor]]) -> tuple[list[Tensor], Tensor]:
        """(fused levels 1-4, global fusion token (B, dim)) from per-modality features (all M, complete)."""
        fused: list[Tensor] = []
        for level, fuse in enumerate(self.fuse):
            x = fuse(torch.cat([f[level] for f in features], dim=1))
            fused.append(x if level == 0 else x + self.residual[level - 1](fused[-1]))
        batch, grid = fused[0].shape[0], features[0][3].shape[-2:]
        position = self.position
        if position.shape[-2:] != grid:
            position = F.interpolate(position, size=grid, mode="bilinear", align_corners=False)
        tokens = [self.fusion_token.expand(batch, -1, -1)]
        for m, f in enumerate(features):
            tokens.append((self.to_tokens(f[3]) + position[m]).flatten(2).transpose(1, 2))
        tokens.append(self.pool_e3(fused[2]).unsqueeze(1))
        out = self.norm(self.blocks(torch.cat(tokens, dim=1)))
        length = grid[0] * grid[1]
        maps = [
            out[:, 1 + m * length : 1 + (m + 1) * length].transpose(1, 2).reshape(batch, -1, *grid)
            for m in range(len(features))
        ]
        fused.append(self.unify(torch.cat(maps, dim=1)))
        return fused, out[:, 0]


class ClassHeads(nn.Module):
    """K per-class 1x1 heads (C -> 1) applied to each class's own feature map, rows laid out (B*K, C, h, w)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, channels))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default init

    def forward(self, x: Tensor) -> Tensor:
        k = self.weight.shape[0]
        per_class = x.reshape(-1, k, *x.shape[1:])
        return torch.einsum("bkchw,kc->bkhw", per_class, self.weight) + self.bias.view(1, -1, 1, 1)


class SkipMerge(nn.Module):
    """PreNormConv over concat(skip, class features), with the skip half computed once per sample.

    InstanceNorm, LeakyReLU and the conv act on the two halves independently, so this is exactly the
    authors' `general_conv2d_prenorm` on the concatenation, without repeating the skip's work K times.
    """

    def __init__(self, skip: int, inp: int, out: int) -> None:
        super().__init__()
        self.skip = PreNormConv(skip, out)
        self.features = PreNormConv(inp, out)
        self.features.conv.bias = None  # one bias, the skip half's

    def forward(self, skip: Tensor, x: Tensor) -> Tensor:
        per_sample = self.skip(skip)
        per_class = self.features(x)
        k = per_class.shape[0] // per_sample.shape[0]
        return (per_class.unflatten(0, (-1, k)) + per_sample.unsqueeze(1)).flatten(0, 1)


class ClassWiseDecoder(nn.Module):
    """CFLM: class-wise spatial attention over fused level 4, one U-Net path per class (shared convs,
    the K classes batched), per-class heads at 1/16..1/2, the K maps merged into penultimate features."""

    def __init__(self, widths: Sequence[int], num_classes: int, class_channels: int, penultimate: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.empty(num_classes, widths[3]))
        nn.init.xavier_uniform_(self.queries)
        self.up = nn.ModuleList(
            [PreNormConv(widths[3], widths[2]), PreNormConv(widths[2], widths[1]), PreNormConv(widths[1], widths[0])]
        )
        self.merge = nn.ModuleList(
            [
                SkipMerge(widths[2], widths[2], widths[2]),
                SkipMerge(widths[1], widths[1], widths[1]),
                SkipMerge(widths[0], widths[0], class_channels),
            ]
        )
        self.heads = nn.ModuleList(
            [ClassHeads(c, num_classes) for c in (widths[3], widths[2], widths[1], class_channels)]
        )
        self.combine = nn.Sequential(
            PreNormConv(num_classes * class_channels, 2 * penultimate), PreNormConv(2 * penultimate, penultimate)
        )
        self.classifier = nn.Conv2d(penultimate, num_classes, 1)

    def forward(self, fused: Sequence[Tensor], size: Sequence[int]) -> tuple[Tensor, list[Tensor], Tensor]:
        """(logits at `size`, per-class logits at 1/16, 1/8, 1/4, 1/2, penultimate features at `size`)."""
        top = fused[3]
        batch, channels, k = top.shape[0], top.shape[1], self.queries.shape[0]
        flat = top.flatten(2).transpose(1, 2)  # (B, N, C)
        attention = torch.softmax(torch.einsum("kc,bnc->bkn", self.queries, flat) / math.sqrt(channels), dim=-1)
        x = (attention.unsqueeze(-1) * flat.unsqueeze(1)).transpose(2, 3)  # (B, K, C, N)
        x = x.reshape(batch * k, channels, *top.shape[-2:])
        auxiliary = [self.heads[0](x)]
        for step, (up, merge) in enumerate(zip(self.up, self.merge, strict=True)):
            skip = fused[FUSED_LEVELS - 1 - step]
            x = merge(skip, up(upsample(x, skip.shape[-2:])))
            auxiliary.append(self.heads[step + 1](x))
        maps = upsample(x, size).reshape(batch, -1, *size)  # K class maps side by side
        penultimate = self.combine(maps)
        return self.classifier(penultimate), auxiliary, penultimate


class Branch(nn.Module):
    """{HF, CFLM} for one availability pattern (or the shared student), plus its KD pools."""

    def __init__(self, widths: Sequence[int], modalities: int, num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.fusion = HierarchicalFusion(widths, modalities, config)
        self.decoder = ClassWiseDecoder(widths, num_classes, config["class_channels"], config["penultimate_channels"])
        self.pools = LevelPools(widths, config["pool_hidden"])

    def forward(
        self, features: Sequence[Sequence[Tensor]], size: Sequence[int], details: bool = False
    ) -> dict[str, Any]:
        fused, token = self.fusion(features)
        logits, auxiliary, penultimate = self.decoder(fused, size)
        if not details:
            return {"logits": logits}
        return {
            "logits": logits,
            "auxiliary": auxiliary,
            "penultimate": penultimate,
            "pooled": [*self.pools(fused[:FUSED_LEVELS]), token],
        }


def _gather(parts: Sequence[tuple[Tensor, Any]], batch: int) -> Any:
    """Per-group outputs (rows `index`) -> batch order, through nested lists/dicts; differentiable."""
    order = torch.argsort(torch.cat([index for index, _ in parts]))

    def merge(items: list[Any]) -> Any:
        if isinstance(items[0], Tensor):
            return torch.cat(items)[order] if len(items) > 1 else items[0]
        if isinstance(items[0], dict):
            return {key: merge([item[key] for item in items]) for key in items[0]}
        return [merge(list(group)) for group in zip(*items, strict=True)]

    return merge([value for _, value in parts])


def _scatter_rows(values: Sequence[Tensor], rows: Tensor) -> list[Tensor]:
    """Features computed on the rows where `rows` is True -> full batch, zeros elsewhere."""
    if bool(rows.all()):
        return list(values)
    index = rows.nonzero().squeeze(1)
    return [v.new_zeros((rows.shape[0], *v.shape[1:])).index_copy(0, index, v) for v in values]


def orthogonality(a: Tensor, b: Tensor) -> Tensor:
    """Per-row squared cosine of (N, D) vectors (the authors' `orthogonality_loss` before its mean)."""
    return (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1).pow(2)


def l2_kd(student: Tensor, teacher: Tensor) -> Tensor:
    """The authors' `l2_kd_loss`: mean squared difference of the channel-L2-normalised features."""
    return (F.normalize(student, dim=1, eps=1e-6) - F.normalize(teacher, dim=1, eps=1e-6)).pow(2).mean()


class Dis2(SegmentationMethod):
    # Overrides of the defaults giving the narrowest network of the same family, for fast CPU checks
    # (tests/test_comparison_methods.py builds every registered method with them).
    tiny_config: ClassVar[dict[str, Any]] = {
        "gf": 4,
        "transformer_dim": 16,
        "heads": 2,
        "mlp_dim": 16,
        "token_grid": 4,
        "pool_hidden": 8,
        "class_channels": 1,
        "penultimate_channels": 4,
    }

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__(modalities, num_classes, config)
        _check(config, len(modalities))
        widths = [config["gf"] * 2**i for i in range(4)]
        names, count = self.modality_names, len(modalities)
        self.encoders = nn.ModuleDict({n: Pix2PixEncoder(c, widths) for n, c in modalities.items()})
        self.uni_heads = nn.ModuleDict({n: UniHead(widths, num_classes) for n in names})
        # compensation[t][s] = C_{s->t}: from source s, stand-in features for a missing t
        self.compensation = nn.ModuleDict(
            {t: nn.ModuleDict({s: Pix2PixEncoder(modalities[s], widths) for s in names if s != t}) for t in names}
        )
        self.compensation_pools = nn.ModuleDict(
            {t: nn.ModuleDict({s: LevelPools(widths, config["pool_hidden"]) for s in names if s != t}) for t in names}
        )
        self.own_pools = nn.ModuleDict({n: LevelPools(widths, config["pool_hidden"]) for n in names})
        if config["branches"] == "per-scenario":
            keys = [self._pattern_key(code) for code in range(1, 2**count)]
        else:
            keys = ["full", "missing"]
        self.branches = nn.ModuleDict({key: Branch(widths, count, num_classes, config) for key in keys})

    # -- routing -----------------------------------------------------------------------------------
    def _pattern_key(self, code: int) -> str:
        """Branch name of availability bit pattern `code` (bit m = modality m available)."""
        full = 2 ** len(self.modality_names) - 1
        if self.config["branches"] == "shared":
            return "full" if code == full else "missing"
        return "p" + "".join("1" if code >> m & 1 else "0" for m in range(len(self.modality_names)))

    def branch_for(self, available: Tensor) -> list[str]:
        """Each sample's branch (the full pattern always gets the full branch)."""
        return [self._pattern_key(code) for code in _codes(available).tolist()]

    def _route(
        self, features: Sequence[Sequence[Tensor]], available: Tensor, size: Sequence[int], details: bool = False
    ) -> dict[str, Any]:
        """Group the rows by availability pattern, run each group through its branch, restore batch order."""
        codes = _codes(available)
        parts = []
        for code in torch.unique(codes).tolist():
            index = (codes == code).nonzero().squeeze(1)
            rows = features if len(index) == len(codes) else [[f.index_select(0, index) for f in m] for m in features]
            parts.append((index, self.branches[self._pattern_key(code)](rows, size, details)))
        return _gather(parts, available.shape[0])

    # -- split interface -------------------------------------------------------------------------
    def encode(self, name: str, x: Tensor) -> dict[str, Any]:
        """Own features, compensation features for every other modality, and the input size (as the shape
        of an empty tensor, so that decode can return logits at exactly the window size)."""
        return {
            "own": self.encoders[name](x),
            "compensation": {t: self.compensation[t][name](x) for t in self.modality_names if t != name},
            "size": x.new_empty(x.shape[0], 0, *x.shape[-2:]),
        }

    def assemble(self, features: Mapping[str, Any], available: Tensor) -> list[list[Tensor]]:
        """Per modality (all M, in order) and level: own features where available, else the mean of the
        compensation features from the sample's available sources; never reads a missing row."""
        assembled = []
        for t_index, t in enumerate(self.modality_names):
            present = available[:, t_index]
            levels = []
            for level in range(4):
                own = features[t]["own"][level] if t in features else None
                if own is not None and bool(present.all()):
                    levels.append(own)
                    continue
                sources = {
                    s_index: features[s]["compensation"][t][level]
                    for s_index, s in enumerate(self.modality_names)
                    if s != t and s in features and t in features[s]["compensation"]
                }
                stand_in = masked_mean(sources, available & ~present.unsqueeze(1))
                levels.append(stand_in if own is None else torch.where(present.view(-1, 1, 1, 1), own, stand_in))
            assembled.append(levels)
        return assembled

    def decode(self, features: Mapping[str, Any], available: Tensor) -> Tensor:
        size = next(iter(features.values()))["size"].shape[-2:]
        return self._route(self.assemble(features, available), available, size)["logits"]

    def _encode_rows(self, inputs: Mapping[str, Tensor], available: Tensor) -> dict[str, Any]:
        """`encode` computed only on the rows that need it: own features where the modality is available,
        C_{s->t} where s is available and t missing (BatchNorm in training mode never sees a missing row)."""
        features = {}
        for s_index, s in enumerate(self.modality_names):
            rows = available[:, s_index]
            if not bool(rows.any()):
                continue
            x = inputs[s]
            compensation = {}
            for t_index, t in enumerate(self.modality_names):
                need = rows & ~available[:, t_index]
                if t != s and bool(need.any()):
                    compensation[t] = _scatter_rows(self.compensation[t][s](x[need]), need)
            features[s] = {
                "own": _scatter_rows(self.encoders[s](x[rows]), rows),
                "compensation": compensation,
                "size": x.new_empty(x.shape[0], 0, *x.shape[-2:]),
            }
        return features

    def forward(self, inputs: Mapping[str, Tensor], available: Tensor) -> Tensor:
        return self.decode(self._encode_rows(inputs, available), available)

    # -- training --------------------------------------------------------------------------------
    def training_availability(self, batch: Mapping[str, Any], info: TrainStep) -> Tensor:
        """The student's pattern per sample: always at least one modality missing."""
        return sampled_availability(self.config["sampler"], batch, info, len(self.modality_names), include_full=False)

    def kd_weight(self, step: int) -> float:
        return float(self.config["kd_weight"]) if step >= self.config["kd_warmup_iterations"] else 0.0

    def loss_terms(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, Tensor]:
        """Every loss term, with gradients (the teacher's KD targets detached)."""
        inputs, label = batch["inputs"], batch["label"]
        size, ignore = label.shape[-2:], info.ignore_index
        available = self.training_availability(batch, info)
        zero = torch.zeros((), device=label.device)

        own = {n: self.encoders[n](inputs[n]) for n in self.modality_names}  # complete training data
        uni = sum((weighted_ce_dice(self.uni_heads[n](own[n], size), label, ignore) for n in self.modality_names), zero)
        full = torch.ones_like(available)
        teacher = self._route([own[n] for n in self.modality_names], full, size, details=True)

        orth_levels = [[] for _ in range(FUSED_LEVELS)]
        features = {}
        for s_index, s in enumerate(self.modality_names):
            compensation = {}
            for t_index, t in enumerate(self.modality_names):
                need = available[:, s_index] & ~available[:, t_index]
                if t == s or not bool(need.any()):
                    continue
                stand_in = self.compensation[t][s](inputs[s][need])
                compensation[t] = _scatter_rows(stand_in, need)
                pooled = self.compensation_pools[t][s](stand_in)
                reference = self.own_pools[s]([f[need] for f in own[s][:FUSED_LEVELS]])
                for level in range(FUSED_LEVELS):
                    orth_levels[level].append(orthogonality(pooled[level], reference[level]))
            features[s] = {"own": own[s], "compensation": compensation}
        orth = sum((torch.cat(values).mean() for values in orth_levels if values), zero)
        student = self._route(self.assemble(features, available), available, size, details=True)

        def segmentation(outputs: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
            main = weighted_ce_dice(outputs["logits"], label, ignore)
            deep = sum((weighted_ce_dice(upsample(a, size), label, ignore) for a in outputs["auxiliary"]), zero)
            return main, deep

        full_loss, full_deep = segmentation(teacher)
        missing_loss, missing_deep = segmentation(student)
        kd = sum((l2_kd(s, t.detach()) for s, t in zip(student["pooled"], teacher["pooled"], strict=True)), zero)
        kd = kd + l2_kd(student["penultimate"], teacher["penultimate"].detach())
        temperature = self.config["kd_temperature"]
        target = F.log_softmax(teacher["logits"].detach().float() / temperature, dim=1)
        log_q = F.log_softmax(student["logits"].float() / temperature, dim=1)
        kd = kd + (target.exp() * (target - log_q)).mean() * temperature**2  # kl_div(reduction="mean"), as theirs
        return {
            "full": full_loss,
            "uni": uni,
            "missing": missing_loss,
            "kd": kd,
            "orthogonality": orth,
            "deep": full_deep + missing_deep,
        }

    def training_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, Tensor]:
        terms = self.loss_terms(batch, info)
        c = self.config
        total = (
            terms["full"]
            + terms["missing"]
            + c["uni_weight"] * terms["uni"]
            + self.kd_weight(info.step) * terms["kd"]
            + c["orthogonality_weight"] * terms["orthogonality"]
            + c["deep_supervision_weight"] * terms["deep"]
        )
        return {"loss": total, **{key: value.detach() for key, value in terms.items()}}


def _codes(available: Tensor) -> Tensor:
    """(B,) availability bit pattern per sample (bit m = modality m available)."""
    weights = 2 ** torch.arange(available.shape[1], device=available.device)
    return (available.long() * weights).sum(1)


def _check(config: Mapping[str, Any], modalities: int) -> None:
    """One-line ConfigErrors naming the key and what it accepts."""
    if config["sampler"] not in SAMPLERS:
        raise ConfigError(
            f"method.sampler={config['sampler']!r}: use one of {', '.join(SAMPLERS)} "
            "(DIS2 trains the student on patterns with a missing modality)"
        )
    if config["branches"] not in BRANCHES:
        raise ConfigError(f"method.branches={config['branches']!r}: use one of {', '.join(BRANCHES)}")
    if config["fusion"] not in FUSIONS:
        raise ConfigError(f"method.fusion={config['fusion']!r}: use one of {', '.join(FUSIONS)}")
    if config["fusion_norm"] not in FUSION_NORMS:
        raise ConfigError(f"method.fusion_norm={config['fusion_norm']!r}: use one of {', '.join(FUSION_NORMS)}")
    for key in (
        "gf",
        "transformer_dim",
        "transformer_layers",
        "heads",
        "mlp_dim",
        "token_grid",
        "pool_hidden",
        "class_channels",
        "penultimate_channels",
    ):
        if not isinstance(config[key], int) or isinstance(config[key], bool) or config[key] < 1:
            raise ConfigError(f"method.{key}={config[key]!r}: must be a positive integer")
    if config["transformer_dim"] % config["heads"]:
        raise ConfigError(
            f"method.heads={config['heads']}: must divide method.transformer_dim={config['transformer_dim']}"
        )
    for key in ("uni_weight", "deep_supervision_weight", "kd_weight", "orthogonality_weight"):
        if not isinstance(config[key], (int, float)) or config[key] < 0:
            raise ConfigError(f"method.{key}={config[key]!r}: must be a number >= 0")
    if not isinstance(config["kd_temperature"], (int, float)) or config["kd_temperature"] <= 0:
        raise ConfigError(f"method.kd_temperature={config['kd_temperature']!r}: must be a positive number")
    if not isinstance(config["kd_warmup_iterations"], int) or config["kd_warmup_iterations"] < 0:
        raise ConfigError(f"method.kd_warmup_iterations={config['kd_warmup_iterations']!r}: must be an integer >= 0")
    if modalities < 2:
        raise ConfigError(f"dis2 needs at least 2 modalities (compensation encoders); got {modalities}")
