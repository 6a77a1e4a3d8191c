"""Conformance checks of a dataset plugin (docs/checking.md): `prepare(settings) -> Path` gives a store that
`mmbench data verify` accepts (the same `TileStore.verify`), holding the modalities and classes the spec
declares, and preparing it again gives the same file (a stable fingerprint, which every record cites)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmbench.plugins import DatasetSpec
from mmbench.registry import DATASETS
from mmbench.testing.origin import describe_origin
from mmbench.testing.results import FAIL, PASS, SKIP, CheckReport


def check_dataset(
    dataset: str | DatasetSpec, *, overrides: Sequence[str] = (), raise_on_failure: bool = True
) -> CheckReport:
    """Check a dataset plugin with its default settings changed by `overrides` (`dataset.KEY=VALUE`);
    raises `ContractViolation` on the first broken rule unless `raise_on_failure` is False."""
    spec = DATASETS.get(dataset) if isinstance(dataset, str) else dataset
    report = CheckReport("dataset", spec.name, describe_origin(DATASETS, spec.name))
    _run(spec, report, overrides)
    if raise_on_failure:
        report.raise_for_failures()
    return report


def _run(spec: DatasetSpec, report: CheckReport, overrides: Sequence[str]) -> None:
    from mmbench.config import resolve_run_config
    from mmbench.data.store_reader import TileStore
    from mmbench.records.fingerprint import file_sha256

    try:
        implementation = spec.load()
        settings = resolve_run_config({"dataset": spec}, overrides=overrides).section("dataset")
    except Exception as exc:
        report.add("loads", FAIL, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        return
    prepare = getattr(implementation, "prepare", None)
    if not callable(prepare):
        report.add("loads", PASS, spec.target)
        report.add(
            "prepare", SKIP, "no prepare(settings): users give its store by path (mmbench data verify FILE checks it)"
        )
        return
    report.add("loads", PASS, spec.target)
    try:
        path = Path(prepare(dict(settings)))
    except Exception as exc:
        report.add("prepare", FAIL, f"prepare(settings) raised {type(exc).__name__}: {' '.join(str(exc).split())}")
        return
    if not path.is_file():
        report.add("prepare", FAIL, f"prepare(settings) returned {path}, which is not a file; return the store's path")
        return
    report.add("prepare", PASS, str(path))
    try:
        with TileStore(path) as store:
            problems = list(store.verify())
            modalities, classes = tuple(store.modality_names), tuple(store.classes)
    except Exception as exc:
        report.add("store-valid", FAIL, f"{path}: {type(exc).__name__}: {' '.join(str(exc).split())}")
        return
    if problems:
        report.add("store-valid", FAIL, f"{path}: {problems[0]} (see 'mmbench data verify {path}')")
        return
    report.add("store-valid", PASS, f"mmbench data verify accepts it: {len(modalities)} modalities")
    if spec.modalities and tuple(spec.modalities) != modalities:
        report.add(
            "declared-metadata",
            FAIL,
            f"the spec declares modalities {', '.join(spec.modalities)} but the store holds {', '.join(modalities)}; "
            "make DatasetSpec.modalities list the store's, in store order",
        )
        return
    if spec.classes and tuple(spec.classes) != classes:
        report.add(
            "declared-metadata",
            FAIL,
            f"the spec declares classes {', '.join(spec.classes)} but the store holds {', '.join(classes)}; "
            "make DatasetSpec.classes list the store's, in order",
        )
        return
    report.add("declared-metadata", PASS, "the store holds the modalities and classes the spec declares")
    first = file_sha256(path)
    try:
        again = Path(prepare(dict(settings)))
    except Exception as exc:
        report.add("fingerprint-stable", FAIL, f"a second prepare(settings) raised {type(exc).__name__}: {exc}")
        return
    if again.resolve() != path.resolve() or file_sha256(again) != first:
        report.add(
            "fingerprint-stable",
            FAIL,
            "preparing the same settings twice gives a different file or fingerprint; seed every random draw and "
            "reuse the store already prepared",
        )
        return
    report.add("fingerprint-stable", PASS, f"{first[:19]}… both times")
