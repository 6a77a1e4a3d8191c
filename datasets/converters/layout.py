"""Declarative descriptions of official dataset layouts.

A converter is data: which files hold which modality or label variant, which archives ship them, how file
names map to source-tile ids, how values are decoded and which splits exist. The machinery in `planning` and
`common` interprets these descriptions, so a layout quirk (zero-padded Potsdam DSM ids, EarthMiss `_SAR`
suffixes, flat ground-truth archives) is one line of data rather than a code path per dataset.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from mmbench.datasets.converters.entry import Entry

# (regex match of the file name, folders above the matched folder) -> source-tile id, or None to skip the file.
Ident = Callable[[re.Match, tuple[str, ...]], "str | None"]
# (source-tile id, the tile's primary file) -> the file name this rule expects for it, for error messages.
Expect = Callable[[str, "Entry"], str]
# (raw (C, H, W) array, file name) -> (uint8 (H, W) class indices with ignore 255, off-palette pixel count).
LabelDecoder = Callable[[np.ndarray, str], "tuple[np.ndarray, int]"]


@dataclass(frozen=True)
class FileRule:
    """One place where the files of a modality or label variant live.

    `name` is a regex that must match the whole file name. `folders` lists the folder paths the file may sit
    in, matched against the end of its parent path ("top", "images/RGB"); "" means a dataset root: the source
    folder itself or the folder that holds the layout's other folders (where flat archives are extracted).
    `archives` names the official zip archives whose members may match (None: any zip in the source folder).
    A member is matched as if its archive had been extracted into a folder named after the archive, so
    `5_Labels_all.zip` works whether its members are flat or under `5_Labels_all/`. `shown` is the pattern
    as users read it in messages, e.g. "top/top_mosaic_09cm_area{N}.tif".
    """

    name: str
    folders: tuple[str, ...]
    ident: Ident
    shown: str
    archives: tuple[str, ...] | None = ()
    expect: Expect | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.name))

    @property
    def regex(self) -> re.Pattern:
        return self._regex  # type: ignore[attr-defined]

    @property
    def folder_parts(self) -> tuple[tuple[str, ...], ...]:
        return tuple(PurePosixPath(folder).parts if folder else () for folder in self.folders)

    def expected(self, source: str, primary: Entry) -> str:
        return self.expect(source, primary) if self.expect is not None else self.shown


@dataclass(frozen=True)
class ModalityRule:
    """A modality: its files, bands, stored dtype and units, and how raw values become stored values.

    Several rules with the same `name` are alternatives (Potsdam RGBIR, else IRRG, else RGB): the first whose
    files exist is used for every tile. `dtype=None` stores the dtype as delivered (integers or floats; all files
    must agree). `source_dtypes` are the dtypes accepted on disk (default: the stored dtype); `convert` maps the
    raw (C, H, W) array to the stored one (e.g. decimetres to metres).
    """

    name: str
    what: str
    bands: tuple[str, ...]
    dtype: str | None
    units: str
    description: str
    files: tuple[FileRule, ...]
    required: bool = True
    source_dtypes: tuple[str, ...] | None = None
    convert: Callable[[np.ndarray], np.ndarray] | None = None
    note: str = ""
    absent_note: str = ""

    def accepted_dtypes(self) -> tuple[str, ...] | None:
        if self.source_dtypes is not None:
            return self.source_dtypes
        return (self.dtype,) if self.dtype is not None else None


@dataclass(frozen=True)
class LabelRule:
    """A label variant ('full', 'eroded'): its files in order of preference per tile, and its decoder.

    `indexed` keeps palette indices of indexed-colour images (index masks) instead of expanding them to colours.
    """

    variant: str
    what: str
    files: tuple[FileRule, ...]
    decoder: LabelDecoder
    indexed: bool = False


@dataclass(frozen=True)
class SplitDef:
    """A named split as source-tile ids per part; the engine keeps the ids that were converted.

    `notes` are facts about this split worth printing (e.g. converted tiles that belong to no part).
    """

    name: str
    parts: Mapping[str, Sequence[str]]
    description: str
    default: bool = False
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    """Everything a converter needs to know about one official distribution.

    The first modality is the primary one: its files define the source tiles. `unlabelled` says what happens
    to a tile without any label file: "skip" (ISPRS test tiles whose ground truth was withheld) or "error"
    (datasets that ship labels for every image). `splits` receives the converted source ids, each with its
    primary file, and returns the split definitions.
    """

    format: str
    converter: str
    version: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] | None
    modalities: tuple[ModalityRule, ...]
    labels: tuple[LabelRule, ...]
    splits: Callable[[Mapping[str, Entry]], Sequence[SplitDef]]
    unlabelled: str = "skip"
    notes: tuple[str, ...] = ()
    hints: Mapping[str, str] = field(default_factory=dict)

    def file_rules(self) -> list[FileRule]:
        rules = [rule for modality in self.modalities for rule in modality.files]
        return rules + [rule for label in self.labels for rule in label.files]

    def archive_names(self) -> frozenset[str] | None:
        """Zip archives to open (None: every zip in the source folder)."""
        names: set[str] = set()
        for rule in self.file_rules():
            if rule.archives is None:
                return None
            names.update(rule.archives)
        return frozenset(names)


_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort key that orders area2 before area10 and 2_9 before 2_10."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(text))
