"""Converters from the official layouts: tiny fixtures under the real names (tests/converter_fixtures.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from converter_fixtures import (
    V_COMPLETE,
    V_ERODED_COMPLETE,
    V_MAIN,
    VAIHINGEN_AREAS,
    WHU_SHEETS,
    make_earthmiss,
    make_potsdam,
    make_vaihingen,
    make_whu,
    tiff_bytes,
)

from mmbench.data.store_format import StoreError
from mmbench.data.store_reader import TileStore
from mmbench.datasets.converters import ConversionReport, convert
from mmbench.datasets.converters.common import LayoutConverter
from mmbench.datasets.converters.whu_opt_sar import split_by_image
from mmbench.errors import PluginError
from mmbench.evaluation.tiling import window_starts
from mmbench.registry import CONVERTERS

TILE = 16


def _convert(fmt: str, source: Path, out: Path, **options) -> tuple[ConversionReport, TileStore]:
    options.setdefault("tile_size", TILE)
    options.setdefault("codec", "lzf")
    report = convert(fmt, source, out, **options)
    store = TileStore(out)
    assert [problem for problem in store.verify() if not _fixture_artifact(problem)] == []
    return report, store


def _fixture_artifact(problem: str) -> bool:
    """What the tiny partial, flat-valued fixtures make `verify` refuse on purpose (mmbench/data/store_checks.py):
    a split part without tiles, a band constant over the training part."""
    return " is empty: " in problem or "statistics 'std' is 0" in problem


def _check_windows(store: TileStore, expected: dict[str, dict[str, np.ndarray]], size: int = TILE) -> None:
    """Every tile equals its window of the source and records its area's size; padding holds the per-band
    training mean of the store's statistics (rounded for integer modalities) and ignore (255) in labels."""
    for index in range(store.num_tiles):
        record = store.tile_record(index)
        source, row, col = record["source"], record["row"], record["col"]
        arrays = expected[source]
        assert record["area_size"] == list(arrays[store.label_variants[0]].shape[-2:]), record["id"]
        for name in store.modality_names:
            mean = np.asarray(store.modalities[name].stats["mean"])
            fill = np.round(mean) if arrays[name].dtype.kind in "ui" else mean
            want = _window(arrays[name], row, col, size, fill)
            got = store.read_modality(name, index)
            assert got.dtype == want.dtype, (name, source)
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {record['id']}")
        for variant in store.label_variants:
            want = _window(arrays[variant][None], row, col, size, np.array([255]))[0]
            np.testing.assert_array_equal(store.read_label(variant, index), want, err_msg=f"{variant} {record['id']}")


def _window(array: np.ndarray, row: int, col: int, size: int, fill: np.ndarray) -> np.ndarray:
    """The (C, size, size) window at (row, col) of `array`, `fill[c]` where band c lies outside the array."""
    height, width = array.shape[-2:]
    padded = np.empty((array.shape[0], max(height, size), max(width, size)), dtype=array.dtype)
    padded[...] = fill.astype(array.dtype)[:, None, None]
    padded[:, :height, :width] = array
    return padded[:, row : row + size, col : col + size]


def _sources(store: TileStore, split: str, part: str) -> set[str]:
    return {store.tile_record(int(i))["source"] for i in store.split_indices(split, part)}


def _assert_no_output(folder: Path) -> None:
    assert not folder.exists() or list(folder.iterdir()) == []


# -- tiling ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("length", "tile", "stride", "starts"),
    [
        (40, 16, 16, [0, 16, 24]),
        (32, 16, 16, [0, 16]),
        (16, 16, 16, [0]),
        (12, 16, 16, [0]),
        (36, 16, 8, [0, 8, 16, 20]),
        (17, 16, 16, [0, 1]),
    ],
)
def test_windows_cover_the_image_and_end_at_the_edge(length, tile, stride, starts):
    assert window_starts(length, tile, stride) == starts


# -- ISPRS Vaihingen -------------------------------------------------------------------------------------------
def test_vaihingen_folder_converts_every_area_with_both_label_variants(tmp_path):
    fixture = make_vaihingen(tmp_path / "src")
    calls = []
    report, store = _convert(
        "isprs-vaihingen", fixture.root, tmp_path / "v.h5", progress=lambda *args: calls.append(args)
    )
    ids = store.tile_ids
    # 36x40 -> rows 0,16,20 x cols 0,16,24; 12x20 padded -> 1 x 2; 16x16 -> 1; 40x17 -> 3 x 2; 33x41 -> 3 x 3
    assert report.tiles == store.num_tiles == 9 + 9 + 2 + 1 + 6 == len(ids)
    assert ids[:3] == ["area1_r0000_c0000", "area1_r0000_c0016", "area1_r0000_c0024"]
    assert "area1_r0020_c0024" in ids and "area5_r0000_c0004" in ids and "area28_r0024_c0001" in ids
    assert store.modality_names == ("optical", "dsm", "ndsm")
    assert store.modalities["optical"].bands == ("IR", "R", "G")
    assert store.modalities["ndsm"].units == "m" and store.modalities["dsm"].dtype == "float32"
    assert store.label_variants == ("full", "eroded")
    assert store.classes[1] == "building" and store.classes[5] == "clutter"
    _check_windows(store, fixture.expected)
    # every area is recorded with its size (area5 is smaller than a tile: its padding is known)
    assert {name: (area.height, area.width) for name, area in store.areas.items()} == {
        f"area{number}": size for number, size in VAIHINGEN_AREAS.items()
    }
    record = store.tile_record(ids.index("area1_r0000_c0016"))
    assert record["files"] == [
        "top/top_mosaic_09cm_area1.tif",
        "dsm/dsm_09cm_matching_area1.tif",
        "ndsm/ndsm_09cm_matching_area1.bmp",
        "top_mosaic_09cm_area1.tif",
        "top_mosaic_09cm_area1_noBoundary.tif",
    ]
    assert report.off_palette_pixels == {"top_mosaic_09cm_area1.tif": 1} == store.provenance["off_palette_pixels"]
    notes = " | ".join(report.notes)
    assert "padded" in notes and "area5 (12x20)" in notes and "per-band training mean" in notes
    assert "top_mosaic_09cm_area9_noBoundary.tif" in notes  # label without imagery
    assert "nDSM stored in metres" in notes
    assert calls[0] == ("isprs-vaihingen area1", 0, 5) and calls[-1][1:] == (5, 5)
    assert [c[1] for c in calls[:5]] == [0, 1, 2, 3, 4]
    # splits
    assert store.default_split == "official"
    assert _sources(store, "official", "train") == {"area1", "area5"}
    assert _sources(store, "official", "val") == {"area11", "area28"}
    assert _sources(store, "official", "test") == {"area2"}
    assert _sources(store, "lineage-12-4", "train") == {"area1"}
    assert _sources(store, "lineage-12-4", "val") == {"area11", "area28"}
    assert _sources(store, "lineage-12-4", "test") == {"area5"}
    # provenance: a sha256 for every file read
    provenance = store.provenance
    assert provenance["source"]["layout"] == "extracted folder" and provenance["archives"] == {}
    assert provenance["tile_size"] == TILE and provenance["stride"] == TILE
    assert provenance["converter"] == "mmbench.datasets.converters.isprs"
    read = {f for area in VAIHINGEN_AREAS for f in store.tile_record(ids.index(f"area{area}_r0000_c0000"))["files"]}
    assert set(provenance["files"]) == read
    for name, digest in provenance["files"].items():
        assert digest == fixture.sha256(name)
    store.close()


def test_vaihingen_zip_archives_give_the_same_store_as_the_folder(tmp_path):
    fixture = make_vaihingen(tmp_path / "zips", zipped=True, ndsm=False)
    assert sorted(p.name for p in fixture.root.iterdir()) == sorted([V_MAIN, V_COMPLETE, V_ERODED_COMPLETE])
    report, store = _convert("isprs-vaihingen", fixture.root, tmp_path / "v.h5")
    assert store.num_tiles == 27 and store.label_variants == ("full", "eroded")
    assert store.modality_names == ("optical", "dsm")
    _check_windows(store, fixture.expected)
    assert report.off_palette_pixels == {f"{V_COMPLETE}/top_mosaic_09cm_area1.tif": 1}
    assert any("nDSM not found" in note for note in report.notes)
    provenance = store.provenance
    assert provenance["source"]["layout"] == "zip archives"
    assert set(provenance["archives"]) == {V_MAIN, V_COMPLETE, V_ERODED_COMPLETE}
    for name, digest in [*provenance["archives"].items(), *provenance["files"].items()]:
        assert digest == fixture.sha256(name)
    assert f"{V_MAIN}/top/top_mosaic_09cm_area2.tif" in provenance["files"]
    # a single archive path works too, and the gts_for_participants labels cover the training areas only
    report, only_main = _convert("isprs-vaihingen", fixture.root / V_MAIN, tmp_path / "main.h5")
    assert {only_main.tile_record(i)["source"] for i in range(only_main.num_tiles)} == {
        "area1",
        "area5",
        "area11",
        "area28",
    }
    assert only_main.label_variants == ("full",)
    notes = " | ".join(report.notes)
    assert "skipped 1 tile whose labels are not in the source: area2" in notes
    assert "no eroded ground truth" in notes and "'full' only" in notes
    assert "split 'official': part 'test' is empty" in notes
    assert len(only_main.split_indices("official", "test")) == 0
    store.close()
    only_main.close()


def test_vaihingen_keeps_the_variant_that_covers_most_tiles(tmp_path):
    fixture = make_vaihingen(tmp_path / "src", eroded_complete=False, eroded_participants=True, ndsm=False)
    report, store = _convert("isprs-vaihingen", fixture.root, tmp_path / "v.h5")
    assert store.label_variants == ("full",) and store.num_tiles == 27
    assert any("eroded ground truth (_noBoundary) found for only 4 of 5" in note for note in report.notes)
    store.close()
    # without the COMPLETE archives, both variants of the four training areas
    fixture = make_vaihingen(tmp_path / "src2", complete=False, eroded_complete=False, eroded_participants=True)
    report, store = _convert("isprs-vaihingen", fixture.root, tmp_path / "v2.h5")
    assert store.label_variants == ("full", "eroded")
    _check_windows(store, fixture.expected)
    assert report.off_palette_pixels == {"gts_for_participants/top_mosaic_09cm_area1.tif": 1}
    store.close()


# -- ISPRS Potsdam ---------------------------------------------------------------------------------------------
def test_potsdam_matches_zero_padded_dsm_ids_and_keeps_rgbir(tmp_path):
    fixture = make_potsdam(tmp_path / "src")
    report, store = _convert("isprs-potsdam", fixture.root, tmp_path / "p.h5")
    assert store.modality_names == ("optical", "dsm", "ndsm")
    assert store.modalities["optical"].bands == ("R", "G", "B", "IR")
    assert store.modalities["ndsm"].units == "DN (8-bit lastools nDSM)"
    assert store.label_variants == ("full", "eroded")
    _check_windows(store, fixture.expected)
    record = store.tile_record(store.tile_ids.index("2_10_r0000_c0000"))
    assert record["files"][:3] == [
        "4_Ortho_RGBIR/top_potsdam_2_10_RGBIR.tif",
        "1_DSM/dsm_potsdam_02_10.tif",
        "1_DSM_normalisation/dsm_potsdam_02_10_normalized_lastools.jpg",
    ]
    assert "2_11_r0001_c0009" in store.tile_ids
    assert report.off_palette_pixels == {}
    assert any("optical from 4_Ortho_RGBIR" in note for note in report.notes)
    assert _sources(store, "official", "train") == {"2_11", "7_10", "4_10"}
    assert _sources(store, "official", "val") == {"2_10"}
    assert _sources(store, "official", "test") == {"2_13"}
    assert _sources(store, "official-no-7_10", "train") == {"2_11", "4_10"}
    assert _sources(store, "lineage-18-6", "train") == {"7_10"}
    assert _sources(store, "lineage-18-6", "val") == {"2_10"}
    assert _sources(store, "lineage-18-6", "test") == {"4_10", "2_11"}
    for name, digest in store.provenance["files"].items():
        assert digest == fixture.sha256(name)
    store.close()


def test_potsdam_zips_fall_back_to_irrg_and_read_flat_label_archives(tmp_path):
    fixture = make_potsdam(tmp_path / "zips", zipped=True, optical="IRRG", ndsm=False)
    report, store = _convert("isprs-potsdam", fixture.root, tmp_path / "p.h5", stride=8)
    assert store.modalities["optical"].bands == ("IR", "R", "G")
    assert store.modality_names == ("optical", "dsm")
    _check_windows(store, fixture.expected)
    assert "2_10_r0004_c0002" in store.tile_ids  # 20x18 at stride 8: rows 0, 4 and cols 0, 2
    assert store.tile_record(0)["files"][-1] == "5_Labels_all_noBoundary.zip/top_potsdam_2_10_label_noBoundary.tif"
    assert store.provenance["stride"] == 8
    for name, digest in [*store.provenance["archives"].items(), *store.provenance["files"].items()]:
        assert digest == fixture.sha256(name)
    store.close()


# -- WHU-OPT-SAR -----------------------------------------------------------------------------------------------
def test_whu_keeps_dtypes_maps_labels_and_splits_by_image(tmp_path):
    fixture = make_whu(tmp_path / "src")
    report, store = _convert("whu-opt-sar", fixture.root, tmp_path / "w.h5")
    assert store.modalities["optical"].dtype == "uint16" and store.modalities["sar"].dtype == "uint8"
    assert store.modalities["optical"].bands == ("R", "G", "B", "NIR")
    assert store.classes[0] == "background" and len(store.classes) == 8
    _check_windows(store, fixture.expected)
    assert any("background (label 0) is stored as class 0" in note for note in report.notes)
    parts = {part: _sources(store, "seeded-6-2-2", part) for part in ("train", "val", "test")}
    assert [len(parts[p]) for p in ("train", "val", "test")] == [3, 1, 1]
    assert set().union(*parts.values()) == set(WHU_SHEETS)
    expected = split_by_image(sorted(WHU_SHEETS))
    assert {part: set(names) for part, names in expected.items()} == parts
    assert split_by_image(list(reversed(sorted(WHU_SHEETS)))) == expected  # order of discovery does not matter
    # every image lies in one part with all its tiles
    for index in range(store.num_tiles):
        source = store.tile_record(index)["source"]
        assert sum(index in store.split_indices("seeded-6-2-2", part) for part in parts) == 1
        assert any(source in names for names in parts.values())
    store.close()
    _, again = _convert("whu-opt-sar", fixture.root, tmp_path / "w2.h5")
    assert {p: a.tolist() for p, a in again.splits["seeded-6-2-2"].items()} == {
        p: a.tolist() for p, a in TileStore(tmp_path / "w.h5").splits["seeded-6-2-2"].items()
    }
    again.close()


def test_whu_split_proportions_on_one_hundred_images():
    split = split_by_image([f"S{i:03d}" for i in range(100)])
    assert [len(split[p]) for p in ("train", "val", "test")] == [60, 20, 20]


# -- EarthMiss -------------------------------------------------------------------------------------------------
def test_earthmiss_pairs_names_shifts_labels_and_uses_the_real_val_cities(tmp_path):
    fixture = make_earthmiss(tmp_path / "src")
    report, store = _convert("earthmiss", fixture.root, tmp_path / "e.h5")
    assert store.modality_names == ("optical", "sar") and store.modalities["sar"].dtype == "uint8"
    assert store.num_tiles == 5 * 4  # 24x20 -> rows 0, 8 x cols 0, 4
    _check_windows(store, fixture.expected)
    assert store.palette[4] == [159, 129, 183]
    record = store.tile_record(store.tile_ids.index("America-Pake_pake_17_r0008_c0004"))
    assert record["files"] == [
        "EarthMiss/America-Pake/images/RGB/pake_17.tif",
        "EarthMiss/America-Pake/images/SAR/pake_17_SAR.tif",
        "EarthMiss/America-Pake/masks/pake_17_mask.tif",
    ]
    assert _sources(store, "official", "train") == {"Nanjing_nj_0001", "Nanjing_nj_0002"}
    assert _sources(store, "official", "val") == {"America-Pake_pake_17"}
    assert _sources(store, "official", "test") == {"Peru-Callao_callao_3"}
    notes = " | ".join(report.notes)
    assert "Atlantis" in notes and "test cities" in notes
    store.close()


# -- bad inputs ------------------------------------------------------------------------------------------------
def _break_vaihingen_size(root: Path) -> str:
    path = root / "dsm" / "dsm_09cm_matching_area2.tif"
    path.write_bytes(tiff_bytes(np.zeros((33, 40), np.float32)))
    return "dsm/dsm_09cm_matching_area2.tif is 33x40"


def _nan_in_last_dsm(root: Path) -> str:
    path = root / "dsm" / "dsm_09cm_matching_area28.tif"
    heights = tifffile.imread(path)
    heights[3, 3] = np.nan
    path.write_bytes(tiff_bytes(heights))
    return "dsm/dsm_09cm_matching_area28.tif: 1 NaN/inf values"


def _remove_dsm_folder(root: Path) -> str:
    shutil.rmtree(root / "dsm")
    return "no DSM found (looked for dsm/dsm_09cm_matching_area{N}.tif under"


def _remove_one_dsm(root: Path) -> str:
    (root / "dsm" / "dsm_09cm_matching_area11.tif").unlink()
    return "DSM missing for 1 of 5 tiles (looked for dsm/dsm_09cm_matching_area11.tif"


def _partial_ndsm(root: Path) -> str:
    (root / "ndsm" / "ndsm_09cm_matching_area2.bmp").unlink()
    return "ndsm/ndsm_09cm_matching_area2.bmp"


@pytest.mark.parametrize(
    "damage", [_break_vaihingen_size, _nan_in_last_dsm, _remove_dsm_folder, _remove_one_dsm, _partial_ndsm]
)
def test_bad_vaihingen_sources_fail_naming_the_file_and_leave_nothing(tmp_path, damage):
    fixture = make_vaihingen(tmp_path / "src")
    message = damage(fixture.root)
    out = tmp_path / "out"
    with pytest.raises(StoreError) as error:
        convert("isprs-vaihingen", fixture.root, out / "v.h5", tile_size=TILE)
    assert message in str(error.value) and "\n" not in str(error.value)
    _assert_no_output(out)


def test_mismatched_potsdam_sizes_name_both_files(tmp_path):
    fixture = make_potsdam(tmp_path / "src", ndsm=False)
    (fixture.root / "1_DSM" / "dsm_potsdam_02_11.tif").write_bytes(tiff_bytes(np.zeros((17, 24), np.float32)))
    with pytest.raises(
        StoreError,
        match=r"4_Ortho_RGBIR/top_potsdam_2_11_RGBIR.tif is 17x25, "
        r"1_DSM/dsm_potsdam_02_11.tif is 17x24",
    ):
        convert("isprs-potsdam", fixture.root, tmp_path / "out" / "p.h5", tile_size=TILE)
    _assert_no_output(tmp_path / "out")


def test_unknown_whu_label_values_fail_naming_the_file(tmp_path):
    fixture = make_whu(tmp_path / "src")
    sheet = sorted(WHU_SHEETS)[-1]
    labels = np.full(WHU_SHEETS[sheet], 20, np.uint8)
    labels[0, :3] = 15
    (fixture.root / "WHU-OPT-SAR" / "lbl" / f"{sheet}.tif").write_bytes(tiff_bytes(labels))
    with pytest.raises(StoreError, match=rf"WHU-OPT-SAR/lbl/{sheet}.tif: unexpected label values 15 in 3 pixels"):
        convert("whu-opt-sar", fixture.root, tmp_path / "out" / "w.h5", tile_size=TILE)
    _assert_no_output(tmp_path / "out")


def test_earthmiss_bad_mask_values_and_missing_sar_fail_naming_the_file(tmp_path):
    fixture = make_earthmiss(tmp_path / "src")
    mask = fixture.root / "EarthMiss" / "Peru-Callao" / "masks" / "callao_3_mask.png"
    from PIL import Image

    Image.fromarray(np.full((24, 20), 9, np.uint8)).save(mask)
    with pytest.raises(StoreError, match=r"Peru-Callao/masks/callao_3_mask.png: unexpected label values 9"):
        convert("earthmiss", fixture.root, tmp_path / "out" / "e.h5", tile_size=TILE)
    _assert_no_output(tmp_path / "out")
    (fixture.root / "EarthMiss" / "Nanjing" / "images" / "SAR" / "nj_0002_SAR.png").unlink()
    with pytest.raises(
        StoreError,
        match=r"SAR image missing for 1 of 5 tiles \(looked for "
        r"Nanjing/images/SAR/nj_0002_SAR.tif\|png",
    ):
        convert("earthmiss", fixture.root, tmp_path / "out" / "e.h5", tile_size=TILE)


def test_missing_whu_modality_folder_names_where_it_looked(tmp_path):
    fixture = make_whu(tmp_path / "src", sheets={"NH49E001013": (20, 24)})
    shutil.rmtree(fixture.root / "WHU-OPT-SAR" / "sar")
    with pytest.raises(
        StoreError,
        match=r"no SAR image found \(looked for sar/\{sheet\}.tif under .*src or in a "
        r"\.zip archive there\)",
    ):
        convert("whu-opt-sar", fixture.root, tmp_path / "out" / "w.h5", tile_size=TILE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile_size": 4}, "tile size 4 is too small"),
        ({"stride": 17}, "stride 17 must be an integer in 1..16"),
        ({"codec": "zip"}, "unknown codec 'zip'"),
        ({"source": "missing"}, "does not exist"),
    ],
)
def test_bad_requests_raise_store_error(tmp_path, kwargs, message):
    arguments = {"format": "earthmiss", "source": tmp_path, "output": tmp_path / "out" / "e.h5", "tile_size": TILE}
    arguments.update(kwargs)
    if kwargs.get("source") == "missing":
        arguments["source"] = tmp_path / "missing"
    fmt = arguments.pop("format")
    with pytest.raises(StoreError, match=message.replace("(", r"\(")):
        convert(fmt, **arguments)
    _assert_no_output(tmp_path / "out")


def test_an_empty_source_says_what_it_looked_for(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Vaihingen.zip").write_bytes(b"")
    with pytest.raises(
        StoreError,
        match=r"no IRRG orthophoto \(TOP\) found .*top/top_mosaic_09cm_area\{N\}.tif.*"
        r"Vaihingen.zip \(extract bundles",
    ):
        convert("isprs-vaihingen", tmp_path / "src", tmp_path / "v.h5")


def test_lzw_compressed_tiffs_convert(tmp_path):
    """GDAL-written sources are often LZW-compressed; imagecodecs (a dependency) decodes them."""
    from PIL import Image

    fixture = make_whu(tmp_path / "src", sheets={"NH49E001013": (20, 24)})
    sar = np.arange(20 * 24, dtype=np.uint8).reshape(20, 24)
    Image.fromarray(sar).save(fixture.root / "WHU-OPT-SAR" / "sar" / "NH49E001013.tif", compression="tiff_lzw")
    report, store = _convert("whu-opt-sar", fixture.root, tmp_path / "w.h5")
    for index in range(store.num_tiles):
        record = store.tile_record(index)
        window = sar[record["row"] : record["row"] + TILE, record["col"] : record["col"] + TILE]
        np.testing.assert_array_equal(store.read_modality("sar", index)[0], window)
    store.close()


def test_a_skipped_unlabelled_tile_needs_no_other_modalities(tmp_path):
    fixture = make_vaihingen(tmp_path / "src", complete=False, eroded_complete=False, ndsm=False)
    (fixture.root / "dsm" / "dsm_09cm_matching_area2.tif").unlink()  # area 2 is a test area without labels here
    report, store = _convert("isprs-vaihingen", fixture.root, tmp_path / "v.h5")
    assert {store.tile_record(i)["source"] for i in range(store.num_tiles)} == {"area1", "area5", "area11", "area28"}
    store.close()


def test_palette_decoding_is_rgb_and_counts_off_palette_but_not_the_eroded_boundary():
    from mmbench.datasets.converters.isprs import ERODED_DECODER, FULL_DECODER

    colours = np.array([[[0, 0, 255], [255, 0, 0], [0, 0, 0], [10, 20, 30], [255, 255, 255]]], np.uint8)
    raw = colours.transpose(2, 0, 1)
    full, off_full = FULL_DECODER(raw, "x.tif")
    eroded, off_eroded = ERODED_DECODER(raw, "x_noBoundary.tif")
    assert full.tolist() == [[1, 5, 255, 255, 0]] and off_full == 2  # black is off-palette in a full label
    assert eroded.tolist() == [[1, 5, 255, 255, 0]] and off_eroded == 1
    with pytest.raises(StoreError, match="x.tif: a colour-coded label must be an 8-bit R, G, B image"):
        FULL_DECODER(raw[:1], "x.tif")


def test_indexed_colour_tiffs_expand_to_their_palette():
    import io

    from mmbench.datasets.converters.rasters import decode_image

    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, 1] = [0, 0, 65535]  # index 1 = blue (building)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.array([[0, 1]], np.uint8), photometric="palette", colormap=colormap)
    assert decode_image(buffer.getvalue(), "l.tif").tolist() == [[[0, 0]], [[0, 0]], [[0, 255]]]
    assert decode_image(buffer.getvalue(), "l.tif", indexed=True).tolist() == [[[0, 1]]]


def test_an_extracted_file_wins_over_the_same_file_in_an_archive(tmp_path):
    fixture = make_vaihingen(tmp_path / "src", zipped=True, ndsm=False, areas={1: (16, 16)})
    top = np.full((16, 16, 3), 7, np.uint8)
    (fixture.root / "top").mkdir()
    (fixture.root / "top" / "top_mosaic_09cm_area1.tif").write_bytes(tiff_bytes(top))
    _, store = _convert("isprs-vaihingen", fixture.root, tmp_path / "v.h5")
    assert (store.read_modality("optical", 0) == 7).all()
    assert store.tile_record(0)["files"][0] == "top/top_mosaic_09cm_area1.tif"
    assert store.provenance["source"]["layout"] == "extracted folder and zip archives"
    store.close()


@pytest.mark.parametrize(
    ("fmt", "build", "folder"), [("whu-opt-sar", make_whu, "WHU-OPT-SAR"), ("earthmiss", make_earthmiss, "EarthMiss")]
)
def test_whu_and_earthmiss_also_read_a_zip_of_their_folder(tmp_path, fmt, build, folder):
    import zipfile

    fixture = build(tmp_path / "extracted")
    (tmp_path / "zips").mkdir()
    with zipfile.ZipFile(tmp_path / "zips" / f"{folder}.zip", "w") as archive:
        for path in sorted((fixture.root / folder).rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(fixture.root).as_posix())
    _, store = _convert(fmt, tmp_path / "zips", tmp_path / "z.h5")
    _check_windows(store, fixture.expected)
    assert store.provenance["source"]["layout"] == "zip archives"
    assert all(name.startswith(f"{folder}.zip/{folder}/") for name in store.provenance["files"])
    store.close()


# -- registration ----------------------------------------------------------------------------------------------
def builtin_converters() -> list[str]:
    return [r.name for r in CONVERTERS.registrations() if (r.sources[0].distribution or "").startswith("mmbench ")]


def test_the_builtin_converters_are_registered():
    assert {"isprs-vaihingen", "earthmiss"} <= set(builtin_converters())


@pytest.mark.parametrize("name", builtin_converters())
def test_each_builtin_converter_is_a_layout_whose_name_and_version_match_its_spec(name):
    spec = CONVERTERS.get(name)
    converter = spec.converter()
    assert isinstance(converter, LayoutConverter)
    assert (converter.layout.format, converter.layout.version) == (spec.name, spec.version)
    assert {rule.name for rule in converter.layout.modalities} == set(spec.modalities)


def test_an_unknown_format_is_a_plugin_error_with_suggestions(tmp_path):
    with pytest.raises(PluginError) as info:
        convert("isprs-toronto", tmp_path, tmp_path / "out.h5")
    message = str(info.value)
    assert "unknown converter 'isprs-toronto'; did you mean 'isprs-potsdam'" in message
    assert f"registered converters: {', '.join(CONVERTERS.names())}" in message and "\n" not in message
    _assert_no_output(tmp_path / "out.h5")


THIRD_PARTY_SPEC = """
from mmbench.registry import ConverterSpec

SPEC = ConverterSpec(
    name="city-pairs",
    summary="Test-only converter from another package: EarthMiss' layout under another name.",
    version="7",
    target="mmb_city_pairs.layout:CONVERTER",
    modalities=("optical", "sar"),
)
NOT_A_CONVERTER = ConverterSpec(name="not-a-converter", summary="s", version="1", target="mmb_city_pairs.layout:TEXT")
"""
THIRD_PARTY_LAYOUT = """
import dataclasses

from mmbench.datasets.converters.common import LayoutConverter
from mmbench.datasets.converters.earthmiss import EARTHMISS

CONVERTER = LayoutConverter(
    dataclasses.replace(EARTHMISS, format="city-pairs", converter="mmb_city_pairs.layout", version="7")
)
TEXT = "no convert method here"
"""


@pytest.fixture
def third_party_converter(install_dist):
    install_dist(
        "mmb-city-pairs",
        {
            "mmbench.converters": {
                "city-pairs": "mmb_city_pairs:SPEC",
                "not-a-converter": "mmb_city_pairs:NOT_A_CONVERTER",
            }
        },
        {"mmb_city_pairs/__init__.py": THIRD_PARTY_SPEC, "mmb_city_pairs/layout.py": THIRD_PARTY_LAYOUT},
        version="0.2.0",
    )


def test_a_converter_from_another_package_registers_and_converts(tmp_path, third_party_converter):
    assert "city-pairs" in CONVERTERS.names() and {"earthmiss", "isprs-potsdam"} <= set(CONVERTERS.names())
    (registration,) = [r for r in CONVERTERS.registrations() if r.name == "city-pairs"]
    assert registration.status == "ok" and registration.sources[0].distribution == "mmb-city-pairs 0.2.0"
    fixture = make_earthmiss(tmp_path / "src")
    report, store = _convert("city-pairs", fixture.root, tmp_path / "c.h5")
    assert report.tiles == store.num_tiles == 5 * 4 and store.name == "city-pairs"
    assert store.provenance["converter"] == "mmb_city_pairs.layout" and store.provenance["converter_version"] == "7"
    _check_windows(store, fixture.expected)
    with pytest.raises(PluginError, match=r"converter 'not-a-converter': mmb_city_pairs.layout:TEXT has no convert"):
        convert("not-a-converter", fixture.root, tmp_path / "n.h5")
