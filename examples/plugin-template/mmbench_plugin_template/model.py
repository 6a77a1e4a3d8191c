"""`template-fusion`: one small CNN encoder per modality, fused by a masked mean of the available ones.

The contract (mmbench.method.SegmentationMethod):

- `inputs[name]` is a float32 tensor (B, C_name, H, W) per modality, normalised with the store's training
  statistics, in dataset order (`self.modality_names`);
- `available` is (B, M) bool, one flag per sample and modality: one batch may mix scenarios;
- the tensor of a missing modality has the right shape but holds nothing (zeros in the engine, NaN in
  the tests): mask it with `torch.where(mask, x, 0)`, never `x * mask` (NaN * 0 is NaN);
- return finite logits (B, num_classes, H, W).

`encode`/`decode` are the optional split interface: the evaluation engine then encodes each modality
once per window and decodes once per scenario instead of running the whole network per scenario.
"""

from __future__ import annotations

import torch
from mmbench.errors import ConfigError
from mmbench.method import SegmentationMethod, TrainStep
from mmbench.sampling import sample_availability
from torch import nn


def conv_block(inp: int, out: int, kernel: int) -> nn.Sequential:
    # GroupNorm normalises each sample on its own: the rows of samples that lack a modality (NaN in the
    # tests) never touch the other rows. BatchNorm in training mode would mix the rows of the batch.
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, padding=kernel // 2, bias=False),
        nn.GroupNorm(min(8, out), out),
        nn.ReLU(inplace=True),
    )


class TemplateFusion(SegmentationMethod):
    def __init__(self, modalities, num_classes, config):
        super().__init__(modalities, num_classes, config)
        width, depth, kernel = config["width"], config["depth"], config["kernel_size"]
        if depth < 1 or width < 1 or kernel % 2 == 0:
            raise ConfigError("template-fusion: method.width and method.depth must be >= 1, method.kernel_size odd")
        self.encoders = nn.ModuleDict(
            {
                name: nn.Sequential(
                    *[conv_block(channels if layer == 0 else width, width, kernel) for layer in range(depth)]
                )
                for name, channels in modalities.items()
            }
        )
        self.head = nn.Sequential(conv_block(width, width, kernel), nn.Conv2d(width, num_classes, 1))

    # -- split interface -----------------------------------------------------------------------
    def encode(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.encoders[name](x)

    def decode(self, features, available: torch.Tensor) -> torch.Tensor:
        total, count = 0, 0
        for index, name in enumerate(self.modality_names):
            if name not in features:  # missing for every sample of the batch
                continue
            mask = available[:, index].view(-1, 1, 1, 1)
            total = total + torch.where(mask, features[name], 0.0)  # never features * mask: NaN * 0 = NaN
            count = count + mask.float()
        return self.head(total / torch.as_tensor(count).clamp_min(1))

    def forward(self, inputs, available):
        return self.decode({name: self.encode(name, inputs[name]) for name in self.modality_names}, available)

    # -- training ------------------------------------------------------------------------------
    def training_availability(self, batch, info: TrainStep) -> torch.Tensor:
        """Train under missing modalities: each sample gets a subset drawn by `modality_dropout`.

        The draw is keyed by (seed, step, micro-batch, slot), so it does not depend on the number of
        processes or on resuming. The default `training_loss` (pixel cross-entropy of `forward`) uses it.
        """
        available = batch["available"]
        slots = batch["slots"].tolist() if "slots" in batch else range(available.shape[0])
        drawn = sample_availability(
            self.config["modality_dropout"],
            len(self.modality_names),
            slots,
            (info.seed, info.step, info.micro),
            device=available.device,
        )
        keep = available & drawn
        # A sample whose drawn subset misses all of its modalities keeps what it has.
        return torch.where(keep.any(dim=1, keepdim=True), keep, available)

    @classmethod
    def trains_for_missing(cls, config) -> bool:
        """Records and boards say whether training showed the model missing modalities; mmbench reads a
        `sampler` key by default, and this template's key is `modality_dropout`."""
        return config["modality_dropout"] != "all"
