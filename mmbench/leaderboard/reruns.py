"""`mmbench leaderboard RUNS --rerun-of ORIGINAL`: do the records in RUNS give the numbers of the same runs in
ORIGINAL, to the last bit?

A rerun is the same configuration (board.config_id: method, version, resolved method config, training store),
seed and table (board.table_key: store and protocol settings). Records are paired by that key, whatever their
file names or `run.label` (a suite may label a configuration differently), and each pair is compared on what a
training and an evaluation produce, in the order a divergence would show first: the validation curve, the
selected step, the selected weights (`method.checkpoint.weights_sha256`, when both records carry it), each
scenario's metrics, confusion matrix and per-unit matrices. Paths, times, run ids and versions are not
compared: they differ between any two runs. docs/run-record.md ("Same seed, same numbers") says what to expect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmbench.errors import UserError
from mmbench.leaderboard.board import _digest, config_id, table_key
from mmbench.leaderboard.collect import LoadedRecord
from mmbench.leaderboard.table_statistics import decoded_unit_matrices


def _checkpoint(item: LoadedRecord) -> Mapping[str, Any]:
    return item.record["method"].get("checkpoint") or {}


def _scenario_field(field: str) -> Callable[[LoadedRecord], Any]:
    return lambda item: [(scenario["name"], scenario.get(field)) for scenario in item.record.get("scenarios", [])]


# (what, how to read it from a record, compared only when both records have it). The per-unit matrices are decoded
# as the board decodes them: an undecodable entry is one line naming the file.
COMPARED: tuple[tuple[str, Callable[[LoadedRecord], Any], bool], ...] = (
    ("validation curve", lambda item: _checkpoint(item).get("validation_curve"), False),
    ("selected step", lambda item: _checkpoint(item).get("selected_step"), False),
    ("weights", lambda item: _checkpoint(item).get("weights_sha256"), True),
    ("metrics", _scenario_field("metrics"), False),
    ("confusion matrices", _scenario_field("confusion_matrix"), False),
    ("per-unit matrices", decoded_unit_matrices, False),
)


@dataclass(frozen=True)
class RerunPair:
    """One run and its rerun: `differences` names each compared part that is not identical (empty: the same
    numbers to the last bit); `skipped` names parts one of the two records lacks."""

    original: LoadedRecord
    rerun: LoadedRecord
    differences: tuple[str, ...]
    skipped: tuple[str, ...]
    config_keys_in_one: tuple[str, ...] = ()

    @property
    def identical(self) -> bool:
        return not self.differences


def rerun_key(record: Mapping[str, Any]) -> tuple[str, str, int, str]:
    """(method, version, seed, table): the candidates for one run; the method configs decide among them."""
    method = record["method"]
    return method["name"], str(method["version"]), int(record["seed"]), _digest(table_key(record))


def _flat(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, Mapping):
        return {prefix: config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def config_gap(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The method-config keys only one of two records has, when every key both have agrees (a key added by a
    later commit with the old behaviour as its default, which the table names); None when a shared key differs:
    then they are two configurations, not a run and its rerun."""
    flat_a, flat_b = _flat(a["config"].get("method") or {}), _flat(b["config"].get("method") or {})
    if any(not _equal(flat_a[key], flat_b[key]) for key in flat_a.keys() & flat_b.keys()):
        return None
    return tuple(sorted(flat_a.keys() ^ flat_b.keys()))


def compare_pair(original: LoadedRecord, rerun: LoadedRecord, config_keys_in_one: tuple[str, ...] = ()) -> RerunPair:
    differences, skipped = [], []
    for what, read, optional in COMPARED:
        a, b = read(original), read(rerun)
        if optional and (a is None or b is None):
            skipped.append(what)
        elif not _equal(a, b):
            differences.append(what)
    return RerunPair(original, rerun, tuple(differences), tuple(skipped), config_keys_in_one)


def _equal(a: Any, b: Any) -> bool:
    """Exact equality, NaN equal to NaN (a class absent from both runs' test part has a NaN IoU in both)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (np.isnan(a) and np.isnan(b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[key], b[key]) for key in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def pair_reruns(
    originals: Sequence[LoadedRecord], reruns: Sequence[LoadedRecord]
) -> tuple[list[RerunPair], list[LoadedRecord], list[LoadedRecord]]:
    """(compared pairs, originals without a rerun, reruns without an original). A rerun pairs with the original
    of its method, version, seed and table whose method config agrees on every key both have (config_gap);
    two such originals (the same run twice in one folder) are an error naming both: which to pair would be a
    guess."""
    candidates: dict[tuple[str, str, int, str], list[LoadedRecord]] = {}
    for item in originals:
        candidates.setdefault(rerun_key(item.record), []).append(item)
    pairs, paired, only_rerun = [], set(), []
    for item in reruns:
        matches = [
            (original, gap)
            for original in candidates.get(rerun_key(item.record), [])
            if (gap := config_gap(original.record, item.record)) is not None
        ]
        if len(matches) > 1:
            raise UserError(
                f"{matches[0][0].path} and {matches[1][0].path} are both the original of {item.path} (same method, "
                "seed, table and config); keep one of them in that folder"
            )
        if not matches:
            only_rerun.append(item)
            continue
        original, gap = matches[0]
        if id(original) in paired:
            raise UserError(f"{original.path} has two reruns in RUNS_DIR ({item.path} is one); keep one of them there")
        paired.add(id(original))
        pairs.append(compare_pair(original, item, gap))
    return pairs, [item for item in originals if id(item) not in paired], only_rerun


def reruns_summary(pairs: Sequence[RerunPair], only_original: Sequence[LoadedRecord], only_rerun: Sequence) -> str:
    identical = sum(pair.identical for pair in pairs)
    text = f"{identical} of {len(pairs)} paired runs give the same numbers to the last bit"
    unpaired = [f"{len(only_original)} originals without a rerun"] if only_original else []
    unpaired += [f"{len(only_rerun)} reruns without an original"] if only_rerun else []
    return text + (f"; {', '.join(unpaired)}" if unpaired else "")


def pair_row(pair: RerunPair) -> dict[str, Any]:
    """One pair as plain data (the JSON output, and the table rows)."""
    record = pair.rerun.record
    return {
        "method": record["method"]["name"],
        "config": config_id(record),
        "seed": record["seed"],
        "protocol": record["protocol"]["name"],
        "steps": _checkpoint(pair.rerun).get("total_steps"),
        "identical": pair.identical,
        "differences": list(pair.differences),
        "not_compared": list(pair.skipped),
        "config_keys_in_one": list(pair.config_keys_in_one),
        "original": str(pair.original.path),
        "rerun": str(pair.rerun.path),
    }


def render_reruns_markdown(
    pairs: Sequence[RerunPair], only_original: Sequence[LoadedRecord], only_rerun: Sequence[LoadedRecord]
) -> str:
    lines = [
        "| method | config | seed | protocol | steps | same numbers | differs in | not compared | config keys in one |",
        "|---|---|---:|---|---:|---|---|---|---|",
    ]
    for row in map(pair_row, pairs):
        lines.append(
            f"| {row['method']} | {row['config']} | {row['seed']} | {row['protocol']} | {row['steps'] or '–'} | "
            f"{'yes' if row['identical'] else 'no'} | {', '.join(row['differences']) or '–'} | "
            f"{', '.join(row['not_compared']) or '–'} | {', '.join(row['config_keys_in_one']) or '–'} |"
        )
    lines += ["", reruns_summary(pairs, only_original, only_rerun) + "."]
    lines += unpaired_lines("no rerun", only_original) + unpaired_lines("no original", only_rerun)
    return "\n".join(lines) + "\n"


def unpaired_lines(what: str, items: Sequence[LoadedRecord], shown: int = 10) -> list[str]:
    """The first `shown` unpaired records by path (a rerun of a few runs against a whole board leaves most of
    the board unpaired: the count says so, the list would bury the table)."""
    lines = [f"- {what}: {item.path}" for item in items[:shown]]
    return lines + ([f"- {what}: {len(items) - shown} more"] if len(items) > shown else [])
