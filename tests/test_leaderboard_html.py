"""The HTML leaderboard: one self-contained, well-formed page with every table, chart and heatmap of the
board, every record string escaped, and nothing fetched from the network."""

from __future__ import annotations

import copy
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mmbench.leaderboard.board import build_board
from mmbench.leaderboard.collect import collect_records
from mmbench.leaderboard.references import load_references
from mmbench.leaderboard.render_html import render_html
from mmbench.leaderboard.svg import colour, heatmap

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / "docs" / "results" / "records" / "synthetic"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
EVIL = "<b>x&y</b>"


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.parts: list[Node | str] = []  # children and text, in document order

    @property
    def children(self) -> list[Node]:
        return [part for part in self.parts if isinstance(part, Node)]

    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def iter(self, tag: str | None = None):
        for child in self.children:
            if tag is None or child.tag == tag:
                yield child
            yield from child.iter(tag)

    def all_text(self) -> str:
        return "".join(part if isinstance(part, str) else part.all_text() for part in self.parts)


class Tree(HTMLParser):
    """A minimal DOM from html.parser that records every mismatched or unclosed element."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.current = self.root
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.current.parts.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.parts.append(Node(tag, dict(attrs), self.current))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if self.current.tag != tag:
            self.errors.append(f"</{tag}> closes <{self.current.tag}>")
            return
        self.current = self.current.parent

    def handle_data(self, data):
        self.current.parts.append(data)


def parse(page: str) -> Tree:
    tree = Tree()
    tree.feed(page)
    tree.close()
    assert tree.errors == []
    assert tree.current is tree.root, f"<{tree.current.tag}> is never closed"
    return tree


def with_class(tree: Tree, tag: str, name: str) -> list[Node]:
    return [node for node in tree.root.iter(tag) if name in node.classes()]


@pytest.fixture(scope="module")
def real_board() -> dict:
    records, skipped = collect_records([str(SYNTHETIC)])
    return build_board(records, skipped, references=load_references())


@pytest.fixture(scope="module")
def real_page(real_board) -> str:
    return render_html(real_board)


def _value(mean, std=None, n=1):
    return {"mean": mean, "std": std, "n": n}


def hand_board() -> dict:
    """Two tables, one of them with hostile strings everywhere a record can put one."""
    hostile_row = {
        "method": EVIL,
        "label": EVIL,
        "version": '1"2',
        "config_id": "abc",
        "paper": "javascript:alert(1)",
        "params": 1893412,
        "seeds": [0, 1],
        "n": 2,
        "values": {
            "scenario:rgb<only>": _value(0.61234, 0.01234, 2),
            "scenario:all": _value(None, None, 0),
            "mean": _value(0.61234, 0.01234, 2),
        },
        "per_class_f1": {"rgb<only>": {"a&b": 0.5, "car": None}, "all": {"a&b": None, "car": None}},
        "records": ['runs/<evil>&"x".json', "javascript:alert(2).json"],
        "commits": ["deadbeef"],
        "mmbench": ["0.1"],
        "flags": ["dirty git tree <script>alert(3)</script>"],
        "rank": 1.0,
    }
    clean_row = {
        "method": "plain",
        "label": "plain",
        "version": "1",
        "config_id": "def",
        "paper": "https://example.org/paper?a=1&b=2",
        "params": None,
        "seeds": [0],
        "n": 1,
        "values": {"scenario:rgb<only>": _value(0.5), "scenario:all": _value(0.7), "mean": _value(0.6)},
        "per_class_f1": {"rgb<only>": {"a&b": 0.25, "car": 0.75}, "all": {"a&b": 1.0, "car": 0.0}},
        "records": ["runs/plain.json"],
        "commits": ["cafe"],
        "mmbench": ["0.1"],
        "flags": [],
        "rank": 2.0,
    }
    table = {
        "id": "toy/<p>/1",
        "dataset": {"name": "toy<&>", "fingerprint": "f00d"},
        "protocol": {"name": "last1", "version": "1"},
        "settings": {"split": "<test>", "classes_scored": ["a&b", "car"], "window": None, "threshold": 0.05},
        "columns": [
            {"key": "scenario:rgb<only>", "label": "rgb<only>", "kind": "scenario"},
            {"key": "scenario:all", "label": "all", "kind": "scenario"},
            {"key": "mean", "label": "mean", "kind": "aggregate"},
        ],
        "primary": "mean",
        "scenarios": ["rgb<only>", "all"],
        "classes": ["a&b", "car"],
        "rows": [hostile_row, clean_row],
        "references": [
            {
                "dataset": "toy<&>",
                "protocol": None,
                "setting": "<i>as printed</i>",
                "method": "Ref&Co",
                "metric": "mIoU",
                "value": 81.76,
                "source": "https://example.org/ref",
                "provenance": "paper",
            },
            {
                "dataset": "toy<&>",
                "protocol": "last1",
                "setting": "s",
                "method": "Other",
                "metric": "mIoU",
                "value": 31.2,
                "source": "README <notes>.md",
                "provenance": "third-party",
            },
        ],
    }
    no_scenarios = {
        "id": "toy/full/2",
        "dataset": {"name": "toy<&>", "fingerprint": "f00d"},
        "protocol": {"name": "random-drop", "version": "2"},
        "settings": {},
        "columns": [{"key": "mean", "label": "mean", "kind": "aggregate"}],
        "primary": "mean",
        "scenarios": [],
        "classes": [],
        "rows": [copy.deepcopy(clean_row)],
        "references": [],
    }
    return {
        "tables": [table, no_scenarios],
        "overall": [
            {"label": EVIL, "points": 1.0, "tables": 1, "rank": 1.0},
            {"label": "plain", "points": 0.5, "tables": 2, "rank": 2.0},
        ],
        "skipped": [
            {"path": "bad<1>.json", "reason": "not JSON & <em>broken</em>"},
            {"path": "old.json", "reason": "schema_version 0"},
        ],
        "filters": {"dataset": None, "protocol": None},
        "records": 3,
    }


def check_structure(page: str, board: dict) -> Tree:
    """Everything the board holds is on the page, and the page is balanced and well-formed."""
    tree = parse(page)
    ET.fromstring(page)  # also well-formed XML: every element closed, no stray '&' or '<'
    assert page.startswith("<!DOCTYPE html>")
    tables = board["tables"]
    boards = with_class(tree, "table", "board")
    assert len(boards) == len(tables)
    for node, table in zip(boards, tables, strict=True):
        assert node.attrs["data-table"] == table["id"]
        assert len(list(node.iter("tr"))) == len(table["rows"]) + 1
        assert len(list(node.iter("thead"))) == 1
    assert len(with_class(tree, "table", "reference")) == sum(1 for table in tables if table["references"])
    assert len(with_class(tree, "svg", "robustness")) == sum(1 for table in tables if table["scenarios"])
    maps = with_class(tree, "svg", "heatmap")
    assert len(maps) == sum(len(table["scenarios"]) for table in tables)
    assert [(m.attrs["data-table"], m.attrs["data-scenario"]) for m in maps] == [
        (table["id"], scenario) for table in tables for scenario in table["scenarios"]
    ]
    overall = with_class(tree, "table", "overall")
    assert len(overall) == 1 and len(list(overall[0].iter("tr"))) == len(board["overall"]) + 1
    return tree


def check_self_contained(tree: Tree, allowed_links: set[str]) -> None:
    assert list(tree.root.iter("link")) == []
    for node in tree.root.iter():
        assert "src" not in node.attrs, f"<{node.tag}> loads {node.attrs['src']}"
        for name, value in node.attrs.items():
            if value and "http" in value.lower() and name in ("href", "xlink:href", "src", "action", "data"):
                assert node.tag == "a" and name == "href" and value in allowed_links, (node.tag, name, value)
    for tag in ("style", "script"):
        for node in tree.root.iter(tag):
            text = node.all_text()
            assert "http" not in text and "@import" not in text and "url(" not in text


def test_the_real_synthetic_board_is_rendered_whole(real_board, real_page):
    assert real_board["tables"], "docs/results/records/synthetic holds records"
    tree = check_structure(real_page, real_board)
    links = {row["paper"] for table in real_board["tables"] for row in table["rows"] if row.get("paper")}
    links |= {ref["source"] for table in real_board["tables"] for ref in table["references"]}
    check_self_contained(tree, links)
    text = tree.root.all_text()
    for table in real_board["tables"]:
        heading = f"{table['dataset']['name']} / {table['protocol']['name']} v{table['protocol']['version']}"
        assert heading in text
        primary = next(column["label"] for column in table["columns"] if column["key"] == table["primary"])
        assert f"Ranked by {primary}" in text
        for key in table["settings"]:
            assert f"{key}=" in text
        for row in table["rows"]:
            assert f"{100 * row['values']['mean']['mean']:.1f}" in text
            for path in row["records"]:
                assert any(a.attrs.get("href") == path for a in tree.root.iter("a"))
    assert "Overall (Borda count)" in text
    across = real_board["across_tables"]
    assert across["available"], "the synthetic records hold >= 3 methods in >= 2 blocks"
    assert len(with_class(tree, "svg", "cd-diagram")) == 1
    assert "Friedman test over N = " in text and "Holm" in text
    assert len(real_page.encode()) < 1_000_000


def test_the_page_is_deterministic(real_board, real_page):
    assert render_html(copy.deepcopy(real_board)) == real_page


def test_every_string_from_a_record_is_escaped():
    board = hand_board()
    page = render_html(board)
    tree = check_structure(page, board)
    check_self_contained(tree, {"https://example.org/paper?a=1&b=2", "https://example.org/ref"})
    assert list(tree.root.iter("b")) == [] and list(tree.root.iter("i")) == []
    assert [node for node in tree.root.iter("em") if "broken" in node.all_text()] == []
    assert len(list(tree.root.iter("script"))) == 1  # only the page's own sorting script
    assert "&lt;b&gt;x&amp;y&lt;/b&gt;" in page
    assert "<b>" not in page and "<script>alert" not in page
    text = tree.root.all_text()
    assert EVIL in text  # shown as text, exactly
    assert "dirty git tree <script>alert(3)</script>" in text
    assert "split=<test>" in text and 'classes_scored=["a&b", "car"]' in text and "window=null" in text
    assert "not JSON & <em>broken</em>" in text and "bad<1>.json" in text
    # no javascript: link, from a paper or from a record path
    hrefs = [a.attrs.get("href") or "" for a in tree.root.iter("a")]
    assert not [href for href in hrefs if href.lower().startswith("javascript:")]
    assert 'runs/<evil>&"x".json' in hrefs and "./javascript:alert(2).json" in hrefs
    svg_text = " ".join(svg.all_text() for svg in tree.root.iter("svg"))
    assert "rgb<only>" in svg_text and "a&b" in svg_text and EVIL in svg_text


def test_cells_show_percent_std_params_flags_and_links():
    board = hand_board()
    tree = parse(render_html(board))
    first = with_class(tree, "table", "board")[0]
    header, hostile, clean = list(first.iter("tr"))
    assert [th.all_text() for th in header.iter("th")] == [
        "rank",
        "method",
        "n (seeds)",
        "rgb<only>",
        "all",
        "mean",
        "p vs best",
        "Δ vs best",
        "params (M)",
        "inference params (M)",
        "s / step",
        "train s",
        "steps",
        "selected at",
        "reproducibility",
    ]
    cells = [td.all_text().strip() for td in hostile.iter("td") if td.parent is hostile]
    assert cells[0] == "1"
    assert cells[2] == "2 (0, 1)"
    assert cells[3] == "61.2 ± 1.2" and cells[4] == "–" and cells[5] == "61.2 ± 1.2"
    assert cells[6] == cells[7] == "–"  # a hand-made board without statistics: no p-value, no Δ interval
    assert cells[8] == "1.89"
    assert cells[9:14] == ["–", "–", "–", "–", "–"]  # no budget in the row: null-safe
    assert "⚠ dirty git tree" in cells[14] and "clean" not in cells[14]
    clean_cells = [td.all_text().strip() for td in clean.iter("td") if td.parent is clean]
    assert clean_cells[3] == "50.0" and "±" not in clean_cells[3]
    assert clean_cells[8] == "–"
    assert clean_cells[14].startswith("clean")
    assert [a.attrs["href"] for a in clean.iter("a")] == ["https://example.org/paper?a=1&b=2", "runs/plain.json"]
    # the hostile row's paper is not a web address: shown as text, not linked
    assert "javascript:alert(1)" in hostile.all_text()
    assert [td.attrs.get("data-sort") for td in clean.iter("td") if td.parent is clean][:2] == ["2.0", "plain"]


def test_reference_numbers_are_a_separate_unranked_table():
    tree = parse(render_html(hand_board()))
    (reference,) = with_class(tree, "table", "reference")
    assert "not ranked" in next(reference.iter("caption")).all_text()
    rows = list(reference.iter("tr"))[1:]
    assert len(rows) == 2
    assert [a.attrs["href"] for a in reference.iter("a")] == ["https://example.org/ref"]
    assert "README <notes>.md" in rows[1].all_text() and "third-party" in rows[1].all_text()
    assert "<i>as printed</i>" in rows[0].all_text() and "not stated" in rows[0].all_text()


def test_heatmap_cells_print_values_and_grey_out_missing_ones():
    tree = parse(render_html(hand_board()))
    first, second = with_class(tree, "svg", "heatmap")
    assert first.attrs["data-scenario"] == "rgb<only>"
    cells = [
        node.all_text() for node in first.iter("text") if node.parent.tag == "g" and "row" in node.parent.classes()
    ]
    assert cells == ["50.0", "–", "25.0", "75.0"]
    grey = [rect for rect in second.iter("rect") if rect.attrs.get("fill") == colour(None)]
    assert len(grey) == 2 + 1  # two missing cells and the key's swatch


def test_an_empty_board_says_so():
    for board in ({"tables": [], "overall": [], "skipped": [{"path": "x.json", "reason": "broken"}], "records": 0}, {}):
        page = render_html(board)
        tree = parse(page)
        ET.fromstring(page)
        assert with_class(tree, "p", "empty")
        assert not list(tree.root.iter("table")) and not list(tree.root.iter("svg"))
    assert (
        "x.json — broken"
        in parse(render_html({"tables": [], "skipped": [{"path": "x.json", "reason": "broken"}]})).root.all_text()
    )


def test_missing_optional_keys_do_not_break_the_page():
    board = hand_board()
    for table in board["tables"]:
        for key in ("references", "columns", "classes", "primary"):
            table.pop(key)
        for row in table["rows"]:
            for key in ("paper", "params", "flags", "commits", "mmbench", "version", "seeds"):
                row.pop(key)
    board.pop("overall")
    board.pop("filters")
    tree = parse(render_html(board))
    assert len(with_class(tree, "table", "board")) == 2
    assert len(with_class(tree, "svg", "heatmap")) == 2


def test_heatmap_colour_scale():
    assert colour(0.0) == "#440154" and colour(1.0) == "#fde725" and colour(2.0) == colour(1.0)
    svg = heatmap(["m"], ["c1", "c2"], [[0.5, None]], title="t")
    assert len([node for node in parse(svg).root.iter("rect")]) == 2 + 10 + 1


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "headless_shell")
DEBIAN_CHROMIUM = "/usr/bin/chromium"


def test_a_headless_browser_keeps_every_table_and_chart(real_board, real_page, tmp_path):
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    browser = browser or (DEBIAN_CHROMIUM if Path(DEBIAN_CHROMIUM).exists() else None)
    if browser is None:  # fail, never skip: a run without a browser must not pass silently
        pytest.fail("no Chromium for the browser test: apt-get install -y chromium", pytrace=False)
    page = tmp_path / "board.html"
    page.write_text(real_page, encoding="utf-8")
    result = subprocess.run(
        [browser, "--headless", "--disable-gpu", "--no-sandbox", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = parse_loosely(result.stdout)
    tables = real_board["tables"]
    assert len(with_class(dom, "table", "board")) == len(tables)
    assert len(with_class(dom, "table", "overall")) == 1
    assert len(with_class(dom, "svg", "robustness")) == sum(1 for table in tables if table["scenarios"])
    assert len(with_class(dom, "svg", "heatmap")) == sum(len(table["scenarios"]) for table in tables)
    assert len(with_class(dom, "svg", "cd-diagram")) == (1 if real_board["across_tables"]["available"] else 0)


def parse_loosely(page: str) -> Tree:
    """The browser's serialisation (no self-closing tags, optional end tags): a tree, without the checks."""
    tree = Tree()
    tree.feed(page)
    tree.close()
    return tree
