"""`mmbench data synth|convert|info|verify`: make, inspect and check tile stores."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.table import Table

from mmbench.console import stdout
from mmbench.errors import ConfigError, UserError
from mmbench.progress import progress_bar
from mmbench.runtime.signals import SIGTERM_EXIT, Terminated


def run(args: argparse.Namespace) -> int:
    action = {"synth": synth, "convert": convert, "info": info, "verify": verify}[args.data_command]
    writes = args.data_command in ("synth", "convert")
    try:
        with sigterm_raises() if writes else contextlib.nullcontext():
            return action(args)
    except UserError as exc:
        from mmbench.data.store_writer import hdf5_left_broken

        if not hdf5_left_broken():
            raise
        # A write failed inside HDF5 (a full disk), whose half-closed file would crash the interpreter's exit:
        # the temporary is already removed, so report the one line and end the process now.
        sys.stderr.write(f"mmbench data: error: {' '.join(str(exc).split())}\n")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(exc.exit_code)
    except Terminated:
        sys.stderr.write(f"mmbench data {args.data_command}: terminated (SIGTERM); no partial store was left behind\n")
        return SIGTERM_EXIT


_PENDING: list[int] = []  # signals received while a store is written (see `sigterm_raises`)


def raise_pending() -> None:
    """Raise for a signal received since the last call: `Terminated` for SIGTERM, KeyboardInterrupt for SIGINT."""
    if _PENDING:
        signum = _PENDING[-1]
        _PENDING.clear()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated("terminated (SIGTERM)")  # a KeyboardInterrupt: no `except Exception` on the way swallows it


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While a command that writes a store runs, SIGTERM and SIGINT are noted and raised between tiles
    (`checked`), where the writer's cleanup runs. Raised from the signal handler itself, an exception can land
    in code that swallows it (an import's lock callback, an HDF5 callback: "Exception ignored in ..."), and the
    write would run to its end. A signal after the last tile lets the complete store be renamed into place.
    Main thread only; a SIGINT the launcher ignores (a background job) stays ignored."""

    def handler(signum: int, frame: object) -> None:
        _PENDING.append(signum)

    wanted = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        wanted.append(signal.SIGINT)
    try:
        previous = {signum: signal.signal(signum, handler) for signum in wanted}
    except ValueError:  # not the main thread: leave signals to whoever owns them
        yield
        return
    _PENDING.clear()
    try:
        yield
    finally:
        _PENDING.clear()
        for signum, action in previous.items():
            signal.signal(signum, action)


def checked(advance: Callable[..., None]) -> Callable[..., None]:
    """`advance` (a progress callback, called once per tile) that first raises for a signal already received."""

    def tick(*args: Any, **kwargs: Any) -> None:
        raise_pending()
        advance(*args, **kwargs)

    return tick


SYNTH_MINIMUM = {  # flag: (least value, why)
    "seed": (0, "the seed must be 0 or more"),
    "tiles": (5, "the synthetic benchmark needs at least 5 tiles (train/val/test)"),
    "size": (64, "synthetic tiles must be at least 64 px"),
}


def synth(args: argparse.Namespace) -> int:
    """Through the registry, as any dataset: the synthetic dataset's implementation writes its own store."""
    from mmbench.config import load_defaults
    from mmbench.registry import DATASETS

    for key, (minimum, why) in SYNTH_MINIMUM.items():
        value = getattr(args, key)
        if value is not None and value < minimum:
            raise ConfigError(f"--{key} {value}: {why}")
    spec = DATASETS.get("synthetic")
    settings = load_defaults(spec.defaults, "dataset 'synthetic'")
    for key in ("seed", "tiles", "size", "codec", "version", "redundancy", "test_share"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    dataset = spec.load()
    config = dataset.config_from(settings)
    path = Path(args.out) if args.out else dataset.store_path(config)
    with progress_bar(f"generating {path.name}", total=config.tiles) as advance:
        dataset.write(path, config, progress=checked(advance))
    stdout().print(f"synthetic store: [bold]{path}[/bold]")
    return 0


def convert(args: argparse.Namespace) -> int:
    """Through the `mmbench.converters` registry: built-in and third-party converters alike."""
    from mmbench.registry import CONVERTERS

    spec = CONVERTERS.get(args.format)  # an unknown name fails first, with suggestions
    if args.tile_size < 8:
        raise ConfigError(f"--tile-size {args.tile_size} is too small; use at least 8 pixels")
    if args.stride is not None and not 0 < args.stride <= args.tile_size:
        raise ConfigError(f"--stride {args.stride} must be in 1..{args.tile_size} (the tile size)")
    source = Path(args.source)
    if not source.exists():
        raise UserError(f"source {args.source!r} does not exist; give the extracted folder or the zip archives")
    converter = spec.converter()

    with progress_bar(f"converting {spec.name}", total=None) as advance:
        report = converter.convert(
            source,
            Path(args.output),
            tile_size=args.tile_size,
            stride=args.stride,
            codec=args.codec,
            progress=checked(lambda description, done, total: advance(done, total, description)),
        )
    console = stdout()
    console.print(f"wrote [bold]{report.output}[/bold]: {report.tiles} tiles")
    for note in report.notes:
        console.print(f"note: {note}")
    if report.off_palette_pixels:
        total = sum(report.off_palette_pixels.values())
        console.print(
            f"[yellow]{total} off-palette label pixels were set to ignore[/yellow] "
            f"(in {len(report.off_palette_pixels)} files; see 'mmbench data info')"
        )
    return 0


def info(args: argparse.Namespace) -> int:
    from mmbench.data.store_reader import TileStore

    with TileStore(args.file) as store:
        summary = _summary(store)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    console = stdout()
    console.print(f"[bold]{summary['name']}[/bold]  {args.file}")
    console.print(
        f"format v{summary['format_version']}, codec {summary['codec']}, {summary['tiles']} tiles of "
        f"{summary['tile_size'][0]}x{summary['tile_size'][1]} px, {len(summary['classes'])} classes, "
        f"ignore {summary['ignore_index']}"
    )
    modalities = Table(title="Modalities", title_justify="left")
    for column in ("name", "bands", "dtype", "units", "mean", "std"):
        modalities.add_column(column, overflow="fold")
    for name, entry in summary["modalities"].items():
        stats = entry["stats"]
        modalities.add_row(
            name,
            ", ".join(entry["bands"]),
            entry["dtype"],
            entry["units"],
            _numbers(stats.get("mean")),
            _numbers(stats.get("std")),
        )
    console.print(modalities)
    for variant, per_split in summary["class_histograms"].items():
        table = Table(
            title=f"Class pixels (%) per split part, labels '{variant}' (default split: {summary['default_split']})",
            title_justify="left",
        )
        table.add_column("class")
        for key in per_split:
            table.add_column(key, justify="right")
        totals = {key: max(sum(entry["pixels"]), 1) for key, entry in per_split.items()}
        for position, name in enumerate([*summary["classes"], "ignore"]):
            table.add_row(
                name, *(f"{100 * entry['pixels'][position] / totals[key]:.2f}" for key, entry in per_split.items())
            )
        table.add_row("[dim]tiles[/dim]", *(f"[dim]{entry['tiles']}[/dim]" for entry in per_split.values()))
        console.print(table)
    provenance = summary["provenance"]
    if provenance:
        console.print(
            "provenance: " + ", ".join(f"{k}={v}" for k, v in provenance.items() if not isinstance(v, (dict, list)))
        )
    return 0


def verify(args: argparse.Namespace) -> int:
    from mmbench.data.store_format import StoreError
    from mmbench.data.store_reader import TileStore

    with TileStore(args.file) as store:
        with progress_bar(f"verifying {Path(args.file).name}", total=store.num_tiles) as advance:
            for problem in store.verify(progress=advance):
                raise StoreError(f"{args.file}: {problem}; {VERIFY_FIX}")
        tiles, modalities, variants = store.num_tiles, len(store.modalities), len(store.label_variants)
    stdout().print(
        f"[green]ok[/green]: {args.file}: {tiles} tiles, {modalities} modalities and {variants} label "
        "variants read back; attributes, shapes, statistics, splits (non-empty, in range, disjoint), checksums, "
        "label range and finiteness are valid"
    )
    return 0


VERIFY_FIX = "re-create the store (convert or generate it again); this is the first problem found"


def _summary(store) -> dict:
    histograms: dict[str, dict[str, dict]] = {}
    for variant in store.label_variants:
        histograms[variant] = {}
        for split, parts in store.splits.items():
            for part, indices in parts.items():
                histograms[variant][f"{split}/{part}"] = {
                    "tiles": int(len(indices)),
                    "pixels": store.class_histogram(variant, indices).tolist(),
                }
    return {
        "name": store.name,
        "format_version": store.format_version,
        "codec": store.codec,
        "tiles": store.num_tiles,
        "tile_size": list(store.tile_size),
        "classes": list(store.classes),
        "ignore_index": store.ignore_index,
        "default_split": store.default_split,
        "modalities": {
            name: {"bands": list(m.bands), "dtype": m.dtype, "units": m.units, "stats": m.stats}
            for name, m in store.modalities.items()
        },
        "splits": {name: {part: len(idx) for part, idx in parts.items()} for name, parts in store.splits.items()},
        "class_histograms": histograms,
        "provenance": store.provenance,
    }


def _numbers(values: list[float] | None) -> str:
    return ", ".join(f"{v:.4g}" for v in values) if values else "-"
