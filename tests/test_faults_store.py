"""Issue 19, area "store": bad tile stores and the `mmbench data` commands, as a user would meet them.

Every case runs mmbench as a user would and asserts through tests/faults.py that the outcome is clean: exit 2
with one `mmbench ...: error:` line naming the thing (split, part, tile, modality, file) and nothing left on
disk. The bad stores are made by editing a good 8-tile synthetic store behind the writer's back (`BAD_STORES`):
`data verify` refuses each (`VERIFY_CASES`), and `mmbench run` refuses each before anything trains (`RUN_CASES`);
the per-tile check of the loader is exercised with the pre-run scan switched off (`LOADER_CASES`). The
`data synth` cases cover bad numbers, a full or read-only filesystem (a small tmpfs where mounting is
permitted, else an injected OSError), SIGTERM/SIGINT and a stale temporary left by a kill -9.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from faults import Result, expect_clean, hidden_temporaries, run_in_process, run_subprocess, terminal_sigint

from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic

AREA = "store"
VERIFY_HINT = "mmbench data verify"


# -- bad stores: a good synthetic store (8 tiles: train 0-5, val 6, test 7) edited behind the writer's back --


def _replace(handle: h5py.File, path: str, data: np.ndarray) -> None:
    del handle[path]
    handle[path] = data


def _stats(handle: h5py.File, modality: str, key: str, values: list[float]) -> None:
    stats = json.loads(handle[f"modalities/{modality}"].attrs["stats"])
    stats[key] = values
    handle[f"modalities/{modality}"].attrs["stats"] = json.dumps(stats)


def _resized(handle: h5py.File, path: str, shape: tuple[int, ...]) -> None:
    old = handle[path]
    dtype, attrs = old.dtype, dict(old.attrs)
    del handle[path]
    new = handle.create_dataset(path, data=np.zeros(shape, dtype=dtype))
    for key, value in attrs.items():
        new.attrs[key] = value


def _value(path: str, index: tuple, value: float) -> Callable[[h5py.File], None]:
    def edit(handle: h5py.File) -> None:
        handle[path][index] = value

    return edit


BAD_STORES: dict[str, Callable[[h5py.File], None]] = {
    "empty_test": lambda h: _replace(h, "splits/default/test", np.zeros(0, dtype=np.int64)),
    "empty_val": lambda h: _replace(h, "splits/default/val", np.zeros(0, dtype=np.int64)),
    "nan_stats": lambda h: _stats(h, "dsm", "mean", [float("nan")]),
    "inf_std": lambda h: _stats(h, "dsm", "std", [float("inf")]),
    "zero_std": lambda h: _stats(h, "sar", "std", [0.0]),
    "negative_std": lambda h: _stats(h, "optical", "std", [20.0, -1.0, 20.0]),
    "overlap": lambda h: _replace(h, "splits/default/test", np.array([5], dtype=np.int64)),
    "index_out_of_range": lambda h: _replace(h, "splits/default/test", np.array([99], dtype=np.int64)),
    "corrupt_json_attr": lambda h: h.attrs.__setitem__("classes", '["impervious_surface", "buil'),
    "corrupt_json_stats": lambda h: h["modalities/dsm"].attrs.__setitem__("stats", "{mean: ["),
    "missing_stats": lambda h: h["modalities/dsm"].attrs.__delitem__("stats"),
    "tile_count": lambda h: h["modalities/sar"].resize(7, axis=0),
    "tile_size": lambda h: _resized(h, "modalities/dsm", (8, 1, 32, 32)),
    "missing_dataset": lambda h: h.__delitem__("labels/eroded"),
    "missing_attr": lambda h: h.attrs.__delitem__("ignore_index"),
    "unknown_default_split": lambda h: h.attrs.__setitem__("default_split", "official"),
    "label_7_test_tile": _value("labels/full", (7, 3, 3), 7),
    "label_7_train_tile": _value("labels/full", (1,), 7),  # whole tiles: every training crop of them is bad
    "nan_test_tile": _value("modalities/dsm", (7, 0, 3, 3), np.nan),
    "inf_train_tile": _value("modalities/sar", (1,), np.inf),
    "newer_format": lambda h: h.attrs.__setitem__("format_version", 99),
}

# case -> fragments the one error line must contain
VERIFY_CASES: dict[str, list[str]] = {
    "empty_test": ["split 'default'", "part 'test'", "empty"],
    "empty_val": ["split 'default'", "part 'val'", "empty"],
    "nan_stats": ["modality 'dsm'", "mean", "height"],
    "inf_std": ["modality 'dsm'", "std", "height"],
    "zero_std": ["modality 'sar'", "std", "sigma0"],
    "negative_std": ["modality 'optical'", "std", "'R'"],
    "overlap": ["split 'default'", "'train'", "'test'", "tile 5 (synthetic_0005)"],
    "index_out_of_range": ["split 'default'", "part 'test'", "99"],
    "corrupt_json_attr": ["attribute 'classes'", "JSON"],
    "corrupt_json_stats": ["modality 'dsm'", "stats", "JSON"],
    "missing_stats": ["modality 'dsm'", "stats"],
    "tile_count": ["modality 'sar'", "7 tiles", "8"],
    "tile_size": ["modality 'dsm'", "32"],
    "missing_dataset": ["labels/eroded"],
    "missing_attr": ["ignore_index"],
    "unknown_default_split": ["default_split", "official"],
    "label_7_test_tile": ["label 'full'", "tile 7 (synthetic_0007)", "[7]"],
    "nan_test_tile": ["modality 'dsm'", "tile 7 (synthetic_0007)", "NaN"],
    "inf_train_tile": ["modality 'sar'", "tile 1 (synthetic_0001)", "NaN/inf"],
    "newer_format": ["format version 99", "upgrade mmbench"],
}

# run cases: refused before training, naming the thing and pointing to `mmbench data verify`
RUN_CASES: dict[str, list[str]] = {
    "empty_test": ["split 'default'", "part 'test'", "empty", VERIFY_HINT],
    "empty_val": ["split 'default'", "part 'val'", "empty", VERIFY_HINT],
    "nan_stats": ["modality 'dsm'", "mean", VERIFY_HINT],
    "zero_std": ["modality 'sar'", "std", VERIFY_HINT],
    "overlap": ["split 'default'", "tile 5 (synthetic_0005)", VERIFY_HINT],
    "index_out_of_range": ["split 'default'", "99", VERIFY_HINT],
    "corrupt_json_attr": ["attribute 'classes'", VERIFY_HINT],
    "corrupt_json_stats": ["modality 'dsm'", "stats", VERIFY_HINT],
    "missing_stats": ["modality 'dsm'", "stats", VERIFY_HINT],
    "tile_count": ["modality 'sar'", "7 tiles", VERIFY_HINT],
    "tile_size": ["modality 'dsm'", "32", VERIFY_HINT],
    "missing_attr": ["ignore_index", VERIFY_HINT],
    "label_7_test_tile": ["label 'full'", "tile 7 (synthetic_0007)", VERIFY_HINT],
    "label_7_train_tile": ["label 'full'", "tile 1 (synthetic_0001)", VERIFY_HINT],
    "nan_test_tile": ["modality 'dsm'", "tile 7 (synthetic_0007)", VERIFY_HINT],
    "inf_train_tile": ["modality 'sar'", "tile 1 (synthetic_0001)", VERIFY_HINT],
}

# the loader's own check (the pre-run scan switched off): the first read of a bad tile stops the run
LOADER_CASES: dict[str, tuple[list[str], list[str]]] = {
    "label_7_train_tile": (["label 'full'", "tile 1 (synthetic_0001)", VERIFY_HINT], []),
    "inf_train_tile": (["modality 'sar'", "tile 1 (synthetic_0001)", VERIFY_HINT], []),
    "label_7_test_tile": (["label 'full'", "tile 7 (synthetic_0007)", VERIFY_HINT], []),
    "label_7_train_tile_workers": (
        ["label 'full'", "tile 1 (synthetic_0001)", VERIFY_HINT],
        ["--set", "method.train.num_workers=2"],
    ),
}


@pytest.fixture(scope="module")
def good_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("good") / "good.h5", SyntheticConfig(tiles=8, size=64))


def bad_store(good: Path, folder: Path, case: str) -> Path:
    path = folder / f"{case.removesuffix('_workers')}.h5"
    shutil.copyfile(good, path)
    with h5py.File(path, "r+") as handle:
        BAD_STORES[case.removesuffix("_workers")](handle)
    return path


def run_args(store: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run",
        "tiny-trainable",
        "-p",
        "full",
        "-d",
        str(store),
        "--out",
        str(out),
        "--set",
        "method.train.iterations=2",
        "--set",
        "method.train.val_every=2",
        *extra,
    ]


@pytest.mark.parametrize("case", list(VERIFY_CASES))
def test_data_verify_refuses_a_bad_store(capsys, tmp_path, good_store, case):
    store = bad_store(good_store, tmp_path, case)
    result = run_in_process(capsys, "data", "verify", store)
    expect_clean(f"verify/{case}", AREA, result, names=[store.name, *VERIFY_CASES[case]])


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_a_run_on_a_bad_store_is_refused_before_training(capsys, tmp_path, good_store, tiny_methods, case):
    store = bad_store(good_store, tmp_path, case)
    result = run_in_process(capsys, *run_args(store, tmp_path / "runs"))
    expect_clean(f"run/{case}", AREA, result, names=RUN_CASES[case])
    assert not list((tmp_path / "runs").rglob("*.ckpt")), "nothing may train on a store the check refuses"


@pytest.mark.parametrize("case", list(LOADER_CASES))
def test_the_loader_stops_at_the_first_read_of_a_bad_tile(
    capsys, tmp_path, good_store, tiny_methods, monkeypatch, case
):
    from mmbench.data import store_checks

    monkeypatch.setattr(store_checks, "SCAN_LIMIT_BYTES", 0)  # the pre-run value scan skips every store
    store = bad_store(good_store, tmp_path, case)
    names, extra = LOADER_CASES[case]
    result = run_in_process(capsys, *run_args(store, tmp_path / "runs", *extra))
    expect_clean(f"loader/{case}", AREA, result, names=names)


def test_the_loader_accepts_ignore_and_refuses_a_class_beyond_the_last(tmp_path, good_store):
    from mmbench.data.loader import TileDataset
    from mmbench.data.store_format import StoreError

    path = tmp_path / "s.h5"
    shutil.copyfile(good_store, path)
    with h5py.File(path, "r+") as handle:
        handle["labels/full"][0, :4, :4] = 255  # the ignore index: fine
        handle["labels/full"][1, 0, 0] = 6  # one past the last of the 6 classes: not fine
    data = TileDataset(path, part="train")
    assert int(data[0]["label"][0, 0]) == 255
    with pytest.raises(StoreError, match=r"label 'full' tile 1 \(synthetic_0001\) has values \[6\]"):
        data[1]


# -- a directory where the store file belongs ------------------------------------------------------------------

DIRECTORY_CASES = {
    "run": lambda d, out: run_args(d, out),
    "info": lambda d, out: ["data", "info", d],
    "verify": lambda d, out: ["data", "verify", d],
}


@pytest.mark.parametrize("command", list(DIRECTORY_CASES))
def test_a_directory_given_as_store_is_named_as_such(capsys, tmp_path, tiny_methods, command):
    folder = tmp_path / "store.h5"
    folder.mkdir()
    result = run_in_process(capsys, *DIRECTORY_CASES[command](folder, tmp_path / "runs"))
    expect_clean(f"directory/{command}", AREA, result, names=["store.h5", "is a directory", "the .h5 store file"])


def test_data_info_on_a_split_listing_a_tile_beyond_the_store(capsys, tmp_path, good_store):
    store = bad_store(good_store, tmp_path, "index_out_of_range")
    result = run_in_process(capsys, "data", "info", store)
    expect_clean("info/index_out_of_range", AREA, result, names=[store.name, "tile 99", VERIFY_HINT])


def test_a_foreign_hdf5_file_is_not_an_mmbench_store(capsys, tmp_path, tiny_methods):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle["x"] = np.zeros(3)
    for command, argv in (("verify", ["data", "verify", foreign]), ("run", run_args(foreign, tmp_path / "runs"))):
        result = run_in_process(capsys, *argv)
        expect_clean(f"foreign_hdf5/{command}", AREA, result, names=["foreign.h5", "not an mmbench tile store"])


# -- data synth: bad numbers --------------------------------------------------------------------------------

SYNTH_ARGUMENT_CASES = {
    "seed_negative": (["--seed", "-1"], ["--seed -1"]),
    "tiles_negative": (["--tiles", "-3"], ["--tiles -3"]),
    "tiles_too_few": (["--tiles", "2"], ["--tiles 2"]),
    "size_negative": (["--size", "-5"], ["--size -5"]),
    "size_too_small": (["--size", "10"], ["--size 10"]),
}


@pytest.mark.parametrize("case", list(SYNTH_ARGUMENT_CASES))
def test_synth_refuses_bad_numbers(capsys, tmp_path, case):
    extra, names = SYNTH_ARGUMENT_CASES[case]
    result = run_in_process(capsys, "data", "synth", "--out", tmp_path / "s.h5", *extra)
    expect_clean(f"synth/{case}", AREA, result, names=names, leftovers=hidden_temporaries(tmp_path))
    assert not (tmp_path / "s.h5").exists()


def test_synth_onto_a_directory_says_so(capsys, tmp_path):
    (tmp_path / "s.h5").mkdir()
    result = run_in_process(capsys, "data", "synth", "--out", tmp_path / "s.h5", "--tiles", "5", "--size", "64")
    expect_clean("synth/out_is_directory", AREA, result, names=["s.h5", "is a directory"])
    assert not hidden_temporaries(tmp_path)


# -- data synth: full and read-only filesystems ----------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(folder: Path, options: str = "size=1m") -> Iterator[Path]:
    """A tiny tmpfs at `folder`; skips when this platform or user may not mount one."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the injected cases cover it")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


# tiles/size chosen so that the space pre-check lets the 30-tile store start (it cannot know the compressed
# size), and the disk fills while it is written; the 48-tile default is refused by the pre-check at once.
# "write_fails": without the writer's free-space margin, so that HDF5's own write fails (where h5py segfaulted).
FULL_DISK_CASES = {
    "fills_while_writing": (["--tiles", "30", "--size", "64"], ["s.h5", "no space left"], {}),
    "write_fails": (
        ["--tiles", "30", "--size", "64"],
        ["s.h5", "no space left"],
        {"MMBENCH_TEST_NO_SPACE_MARGIN": "1"},
    ),
    "refused_by_precheck": ([], ["s.h5", "free", "MB"], {}),
}


@pytest.mark.parametrize("case", list(FULL_DISK_CASES))
def test_synth_on_a_full_filesystem_is_one_line_and_leaves_nothing(tmp_path, case):
    extra, names, env = FULL_DISK_CASES[case]
    with small_tmpfs(tmp_path / "full") as folder:
        result = run_subprocess(["data", "synth", "--out", folder / "s.h5", *extra], env=env)
        expect_clean(f"synth/full_disk_{case}", AREA, result, names=names, leftovers=[*hidden_temporaries(folder)])
        assert not (folder / "s.h5").exists()


def test_synth_on_a_read_only_filesystem(tmp_path):
    with small_tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        result = run_subprocess(["data", "synth", "--out", folder / "s.h5", "--tiles", "5", "--size", "64"])
        expect_clean("synth/read_only", AREA, result, names=["s.h5", "read-only"])


INJECTED_CASES = {"enospc": errno.ENOSPC, "erofs": errno.EROFS, "eio": errno.EIO}


@pytest.mark.parametrize("case", list(INJECTED_CASES))
def test_synth_write_failures_injected(capsys, tmp_path, monkeypatch, case):
    """Where no tmpfs can be mounted, the same path through an injected OSError from the HDF5 writes."""
    from mmbench.data import store_writer

    calls = {"n": 0}
    original = store_writer.TileStoreWriter._append

    def failing_append(self, path, value):
        calls["n"] += 1
        if calls["n"] > 20:
            raise OSError(INJECTED_CASES[case], os.strerror(INJECTED_CASES[case]))
        return original(self, path, value)

    monkeypatch.setattr(store_writer.TileStoreWriter, "_append", failing_append)
    result = run_in_process(capsys, "data", "synth", "--out", tmp_path / "s.h5", "--tiles", "5", "--size", "64")
    expect_clean(
        f"synth/injected_{case}",
        AREA,
        result,
        names=["s.h5", os.strerror(INJECTED_CASES[case]).lower()],
        leftovers=hidden_temporaries(tmp_path),
    )
    assert not (tmp_path / "s.h5").exists()


def test_convert_shares_the_writers_one_line_on_a_full_disk(capsys, tmp_path, monkeypatch):
    from converter_fixtures import make_vaihingen

    from mmbench.data import store_writer

    monkeypatch.setattr(store_writer, "SPACE_MARGIN_BYTES", 2**50)  # as if the disk were nearly full
    source = make_vaihingen(tmp_path / "src").root
    out = tmp_path / "out" / "v.h5"
    result = run_in_process(capsys, "data", "convert", "isprs-vaihingen", source, out, "--tile-size", "16")
    expect_clean(
        "convert/full_disk", AREA, result, names=["v.h5", "no space left"], leftovers=hidden_temporaries(out.parent)
    )
    assert not out.exists()


# -- data synth: signals and what a kill -9 leaves behind -------------------------------------------------------

SIGNAL_CASES = {"sigterm": (signal.SIGTERM, 143), "sigint": (signal.SIGINT, 130)}


@pytest.mark.parametrize("case", list(SIGNAL_CASES))
def test_a_signal_during_synth_leaves_no_temporary(tmp_path, case):
    sent, code = SIGNAL_CASES[case]
    process = subprocess.Popen(
        [sys.executable, "-m", "mmbench", "data", "synth", "--out", str(tmp_path / "s.h5"), "--tiles", "2000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=terminal_sigint,
    )
    try:
        while not hidden_temporaries(tmp_path) and process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(0.1)
        process.send_signal(sent)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    result = Result(process.returncode, out, err)
    expect_clean(
        f"synth/{case}", AREA, result, expect_code=code, signalled=True, leftovers=hidden_temporaries(tmp_path)
    )
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "s.h5").exists(), err


def test_the_next_synth_removes_a_stale_temporary_but_not_a_live_one(capsys, tmp_path):
    stale = tmp_path / ".s.h5.k9dead.tmp"  # what a kill -9 in the middle of a write leaves
    stale.write_bytes(b"\0" * 4096)
    live = tmp_path / ".s.h5.writing.tmp"  # another process still writing the same target (holds its lock)
    live.write_bytes(b"\0" * 4096)
    with open(live, "rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        result = run_in_process(capsys, "data", "synth", "--out", tmp_path / "s.h5", "--tiles", "5", "--size", "64")
        assert live.exists(), "a temporary whose writer is alive must stay"
    leftovers = [path for path in hidden_temporaries(tmp_path) if path != live]
    expect_clean("synth/stale_tmp_after_kill9", AREA, result, expect_code=0, leftovers=leftovers)
    assert (tmp_path / "s.h5").exists()
