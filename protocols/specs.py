"""Specs of the built-in protocols, registered through the `mmbench.protocols` entry-point group.

Free of heavy imports: `mmbench list` imports this module, never the protocol code. A protocol's
`version` changes whenever its numbers could change; records carry it, and leaderboards never mix
versions.
"""

from mmbench.plugins import ProtocolSpec

_PACKAGE = "mmbench.protocols"
_EMM = "https://arxiv.org/abs/2503.18445"

FULL = ProtocolSpec(
    name="full",
    summary="All modalities present (the cost of robustness on complete data).",
    version="1",
    target=f"{_PACKAGE}.scenario_sets:Full",
    defaults=f"{_PACKAGE}:full.yaml",
)
MISSING1 = ProtocolSpec(
    name="missing1",
    summary="Each single modality removed in turn; per-scenario results and mean.",
    version="1",
    target=f"{_PACKAGE}.scenario_sets:Missing1",
    defaults=f"{_PACKAGE}:missing1.yaml",
)
LAST1 = ProtocolSpec(
    name="last1",
    summary="Exactly one modality left, each in turn; mean and worst case.",
    version="1",
    target=f"{_PACKAGE}.scenario_sets:Last1",
    defaults=f"{_PACKAGE}:last1.yaml",
)
SUBSETS = ProtocolSpec(
    name="subsets",
    summary="All 2^M-1 non-empty subsets (EMM): plain mean and Bernoulli E(p).",
    version="1",
    target=f"{_PACKAGE}.scenario_sets:Subsets",
    paper=_EMM,
    defaults=f"{_PACKAGE}:subsets.yaml",
)
RANDOM_DROP = ProtocolSpec(
    name="random-drop",
    summary="Per sample, each modality dropped with probability p (never all); R repeats.",
    version="1",
    target=f"{_PACKAGE}.random_drop:RandomDrop",
    defaults=f"{_PACKAGE}:random-drop.yaml",
)
PIXEL_DROP = ProtocolSpec(
    name="pixel-drop",
    summary="Degraded modalities lose a fraction r of their pixels (RMM); mean and E(p) per r.",
    version="1",
    target=f"{_PACKAGE}.pixel_drop:PixelDrop",
    paper=_EMM,
    defaults=f"{_PACKAGE}:pixel-drop.yaml",
)
MINORITY = ProtocolSpec(
    name="minority",
    summary="Per-class results for rare classes under every scenario of a base protocol.",
    version="2",  # 2: minority classes are taken among classes_scored only
    target=f"{_PACKAGE}.minority:Minority",
    defaults=f"{_PACKAGE}:minority.yaml",
)
