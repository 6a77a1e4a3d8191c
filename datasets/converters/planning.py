"""Turning a layout and an indexed source into a plan: which file feeds each modality and label of each tile.

Planning reads only file names, so every missing folder, missing file or unlabelled tile is reported before a
single pixel is decoded or a byte of output written.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mmbench.data.store_format import StoreError
from mmbench.datasets.converters.entry import Entry
from mmbench.datasets.converters.layout import FileRule, LabelRule, Layout, ModalityRule, natural_key
from mmbench.datasets.converters.sources import SourceTree

_SHOWN = 5  # ids or names listed in one message before "..."
Finder = Callable[[Sequence[FileRule]], dict[str, Entry]]


@dataclass
class SourceTile:
    """One source tile: the file of each modality and label variant."""

    source: str
    modalities: dict[str, Entry]
    labels: dict[str, Entry]

    @property
    def files(self) -> list[Entry]:
        return [*self.modalities.values(), *self.labels.values()]


@dataclass
class Plan:
    modalities: list[ModalityRule]
    labels: list[LabelRule]
    tiles: list[SourceTile]
    notes: list[str]


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _SHOWN else "")


def places(tree: SourceTree, rules: Sequence[FileRule]) -> str:
    """'under /data or in ISPRS_semantic_labeling_Vaihingen.zip': where files of these rules were looked for."""
    if any(rule.archives is None for rule in rules):
        return f"under {tree.source} or in a .zip archive there"
    archives = list(dict.fromkeys(name for rule in rules for name in rule.archives or ()))
    return f"under {tree.source}" + (" or in " + ", ".join(archives) if archives else "")


def where(tree: SourceTree, rules: Sequence[FileRule]) -> str:
    """'top/top_mosaic_09cm_area{N}.tif under /data or in ISPRS_semantic_labeling_Vaihingen.zip'."""
    return " or ".join(dict.fromkeys(rule.shown for rule in rules)) + " " + places(tree, rules)


def make_plan(layout: Layout, tree: SourceTree) -> Plan:
    roots = tree.roots(layout.file_rules())
    notes: list[str] = []

    def found(rules: Sequence[FileRule]) -> dict[str, Entry]:
        result: dict[str, Entry] = {}
        for rule in rules:
            for source, entry in tree.find(rule, roots).items():
                result.setdefault(source, entry)
        return result

    modalities, files = _choose_modalities(layout, tree, found, notes)
    primary = modalities[0]
    primary_files = files[primary.name]
    sources = sorted(primary_files, key=natural_key)
    labels, label_files, labelled = _choose_labels(layout, tree, found, sources, notes)
    unlabelled = [source for source in sources if source not in labelled]
    if unlabelled and layout.unlabelled == "error":
        rules = [file_rule for rule in layout.labels for file_rule in rule.files]
        expected = [rules[0].expected(source, primary_files[source]) for source in unlabelled]
        raise StoreError(
            f"{layout.format}: labels missing for {len(unlabelled)} of {plural(len(sources), 'image')} "
            f"(looked for {listing(expected)} {places(tree, rules)}); add the label files"
        )
    if unlabelled:
        hint = f" ({layout.hints['unlabelled']})" if "unlabelled" in layout.hints else ""
        notes.append(
            f"skipped {plural(len(unlabelled), 'tile')} whose labels are not in the source: {listing(unlabelled)}{hint}"
        )
    converted = [source for source in sources if source in labelled]
    for rule in modalities[1:]:
        missing = [source for source in converted if source not in files[rule.name]]
        if missing:
            expected = [rule.files[0].expected(source, primary_files[source]) for source in missing]
            fix = "add the files" if rule.required else f"add them, or remove the {rule.what} files to convert without"
            raise StoreError(
                f"{layout.format}: {rule.what} missing for {len(missing)} of "
                f"{plural(len(converted), 'tile')} (looked for {listing(expected)} "
                f"{places(tree, rule.files)}); {fix}"
            )
        extra = sorted(set(files[rule.name]) - set(sources), key=natural_key)
        if extra:
            notes.append(
                f"ignored {plural(len(extra), rule.what + ' file')} without a {primary.what}: "
                f"{listing([files[rule.name][s].display for s in extra])}"
            )
    tiles = [
        SourceTile(
            source,
            {rule.name: files[rule.name][source] for rule in modalities},
            {rule.variant: label_files[rule.variant][source] for rule in labels},
        )
        for source in converted
    ]
    return Plan(modalities, labels, tiles, notes)


def _choose_modalities(
    layout: Layout, tree: SourceTree, found: Finder, notes: list[str]
) -> tuple[list[ModalityRule], dict[str, dict[str, Entry]]]:
    """The first alternative of each modality whose files exist; a required modality without files is an error."""
    groups: dict[str, list[ModalityRule]] = {}
    for rule in layout.modalities:
        groups.setdefault(rule.name, []).append(rule)
    chosen: list[ModalityRule] = []
    files: dict[str, dict[str, Entry]] = {}
    for position, (name, alternatives) in enumerate(groups.items()):
        for rule in alternatives:
            entries = found(rule.files)
            if entries:
                break
        else:
            looked = where(tree, [file_rule for rule in alternatives for file_rule in rule.files])
            if alternatives[0].required:
                what = " or ".join(rule.what for rule in alternatives)
                hint = _unused_archives_hint(tree)
                raise StoreError(f"{layout.format}: no {what} found (looked for {looked}){hint}")
            notes.append(
                alternatives[0].absent_note
                or f"{alternatives[0].what} not found (looked for {looked}): the store has no '{name}' modality"
            )
            continue
        if position == 0 and not rule.required:
            raise AssertionError("the primary modality must be required")
        chosen.append(rule)
        files[name] = entries
        if rule.note:
            notes.append(rule.note)
    return chosen, files


def _unused_archives_hint(tree: SourceTree) -> str:
    if tree.unused_archives:
        return (
            f"; found archives this converter does not read: {listing(tree.unused_archives)} "
            "(extract bundles that contain the official archives)"
        )
    return ""


def _choose_labels(
    layout: Layout, tree: SourceTree, found: Finder, sources: list[str], notes: list[str]
) -> tuple[list[LabelRule], dict[str, dict[str, Entry]], set[str]]:
    """The label variants to store: the set that covers the most tiles (then the most variants).

    A store holds the same variants for every tile, so a variant found for only some tiles is either stored
    and the other tiles skipped, or dropped; whichever keeps more tiles wins, and the notes say which happened.
    """
    wanted = set(sources)
    label_files = {rule.variant: found(rule.files) for rule in layout.labels}
    orphans = sorted(
        {entry.display for entries in label_files.values() for source, entry in entries.items() if source not in wanted}
    )
    if orphans:
        notes.append(f"ignored {plural(len(orphans), 'label file')} without imagery: {listing(orphans)}")
    coverage = {variant: set(entries) & wanted for variant, entries in label_files.items()}
    present = [rule for rule in layout.labels if coverage[rule.variant]]
    if not present:
        looked = "; ".join(where(tree, rule.files) for rule in layout.labels)
        raise StoreError(
            f"{layout.format}: no label files found for any of the {len(sources)} tiles "
            f"(looked for {looked}){_unused_archives_hint(tree)}"
        )
    best: tuple[LabelRule, ...] = ()
    best_cover: set[str] = set()
    for size in range(1, len(present) + 1):
        for subset in itertools.combinations(present, size):
            cover = set.intersection(*(coverage[rule.variant] for rule in subset))
            if (len(cover), len(subset)) > (len(best_cover), len(best)):
                best, best_cover = subset, cover
    kept = ", ".join(f"'{rule.variant}'" for rule in best)
    for rule in layout.labels:
        if rule in best:
            continue
        if not coverage[rule.variant]:
            notes.append(f"no {rule.what} found (looked for {where(tree, rule.files)}): the store has {kept} only")
        else:
            notes.append(
                f"{rule.what} found for only {len(coverage[rule.variant])} of {len(best_cover)} labelled "
                f"tiles: the store has {kept} only"
            )
    return list(best), {rule.variant: label_files[rule.variant] for rule in best}, best_cover
