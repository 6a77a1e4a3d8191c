"""What a conversion tells its caller (kept free of heavy imports: the CLI imports it to print results)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ConversionReport:
    """The result of `convert`: where the store is, how many tiles it has, and what the user should know.

    `off_palette_pixels` maps each source label file (as named in the store's provenance) to the number of its
    pixels that matched no palette colour and were therefore stored as ignore; only files with such pixels appear.
    `notes` are one-line facts worth printing: skipped tiles, missing optional modalities, unit conversions.
    """

    output: Path
    tiles: int
    off_palette_pixels: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
