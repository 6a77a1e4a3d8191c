"""The HTML board in a real headless browser (Debian's Chromium, driven by playwright): it loads with no
console or page error and no network request, its tables sort when a header is clicked, and every chart
is drawn with a non-zero size.

`tests/test_leaderboard_html.py` checks the page as text; only a browser shows what a reader gets: a
script error, a sort that scrambles rows, or an SVG that lays out to nothing. This test never downloads
a browser (playwright's own download needs the network): it uses the `chromium` on PATH, and fails, not
skips, when there is none, so a CI run without a browser cannot pass silently (`.ci/run` installs it).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mmbench.atomic import write_text_atomic
from mmbench.leaderboard.board import build_board, relative_record_paths
from mmbench.leaderboard.cd_diagram import cd_diagram
from mmbench.leaderboard.collect import collect_records
from mmbench.leaderboard.references import load_references
from mmbench.leaderboard.render_html import render_html

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "docs" / "results" / "records" / "synthetic"
INSTALL = "install Debian's Chromium with 'apt-get install -y chromium' (as root; .ci/run does this in CI)"

# Every element that draws a chart on the board. `svg` covers each inline chart whatever its class;
# `[role=img]` and the figure wrappers catch a chart drawn another way (a canvas, an <img> of data:).
CHART_SELECTORS = ("svg", "[role=img]", ".charts figure")
# The critical-difference diagram of the "Across tables" section: an <svg class="cd-diagram">.
CD_DIAGRAM = ".cd-diagram"
LOCAL_SCHEMES = ("file:", "data:")
DEBIAN_CHROMIUM = "/usr/bin/chromium"


@dataclass
class Watch:
    """What the page did that a self-contained, bug-free board never does."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.errors, "console/page errors: " + " | ".join(self.errors)
        assert not self.requests, "network requests from a self-contained page: " + ", ".join(self.requests)


def _chromium() -> str:
    """Debian's Chromium: `chromium` on PATH, else where Debian's package puts it."""
    found = shutil.which("chromium") or shutil.which(DEBIAN_CHROMIUM)
    if found is None:
        pytest.fail(f"no 'chromium' on PATH for the browser test: {INSTALL}", pytrace=False)
    return found


@pytest.fixture(scope="module")
def board_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic benchmark's board from the committed records, made by the steps of
    `mmbench leaderboard RECORDS --format html --out FILE` (mmbench/cli/leaderboard_command.py) but
    without the CLI module, which imports torch for `--check` (seconds of the test's time)."""
    out = tmp_path_factory.mktemp("board") / "leaderboard.html"
    records, skipped = collect_records([str(RECORDS)])
    board = build_board(records, skipped, references=load_references())
    relative_record_paths(board, out.parent)
    write_text_atomic(out, render_html(board))
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'", pytrace=False)
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            pytest.fail(f"cannot start {executable} ({first}): {INSTALL}", pytrace=False)
        yield launched
        launched.close()


def _local_only(route: Any) -> None:
    """Let file: and data: loads through; abort anything else (the `request` listener records it)."""
    if route.request.url.startswith(LOCAL_SCHEMES):
        route.continue_()
    else:
        route.abort()


@pytest.fixture(scope="module")
def context(browser: Any) -> Iterator[Any]:
    """One browser context for the module, with every request that is not file: or data: aborted."""
    opened = browser.new_context(viewport={"width": 1400, "height": 900})
    opened.route("**/*", _local_only)
    yield opened
    opened.close()


def _open(context: Any, board_file: Path) -> tuple[Any, Watch]:
    """The board opened from file:// in a new tab, with console errors, page errors and non-local
    requests recorded from the first byte on."""
    watch = Watch()
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and watch.errors.append(f"console: {message.text}"))
    page.on("pageerror", lambda error: watch.errors.append(f"page error: {error}"))
    page.on("request", lambda request: request.url.startswith(LOCAL_SCHEMES) or watch.requests.append(request.url))
    page.goto(board_file.as_uri(), wait_until="load")
    return page, watch


@pytest.fixture(scope="module")
def shown(context: Any, board_file: Path) -> tuple[Any, Watch]:
    """The board as loaded, shared by the tests that only look at it (loading costs about half a second)."""
    return _open(context, board_file)


@pytest.fixture
def board(context: Any, board_file: Path) -> Iterator[tuple[Any, Watch]]:
    """A fresh copy of the board for a test that clicks or edits it."""
    page, watch = _open(context, board_file)
    yield page, watch
    page.close()


def assert_rendered(page: Any, selectors: Sequence[str], *, at_least: int = 0) -> int:
    """Every element matching any of `selectors` has a non-zero bounding box; returns how many matched
    (an element matched by two selectors counts once) and fails when fewer than `at_least` did."""
    boxes = page.evaluate(
        """(selectors) => {
            const seen = new Set();
            for (const selector of selectors) { document.querySelectorAll(selector).forEach(e => seen.add(e)); }
            return Array.from(seen, (e) => {
                const box = e.getBoundingClientRect();
                const name = e.tagName.toLowerCase() + (e.getAttribute("class") ? "." + e.getAttribute("class") : "");
                const where = Object.entries(e.dataset).map(([k, v]) => k + "=" + v).join(",");
                return {name: name + (where ? "[" + where + "]" : ""), width: box.width, height: box.height};
            });
        }""",
        list(selectors),
    )
    empty = [f"{box['name']} ({box['width']}x{box['height']})" for box in boxes if not (box["width"] and box["height"])]
    assert not empty, f"charts drawn with zero size: {', '.join(empty)}"
    assert len(boxes) >= at_least, f"expected at least {at_least} of {', '.join(selectors)}, found {len(boxes)}"
    return len(boxes)


def assert_cd_diagrams_rendered(page: Any, *, at_least: int = 0) -> int:
    """The critical-difference diagrams (`.cd-diagram`) have a non-zero size, and at least `at_least` exist."""
    return assert_rendered(page, [CD_DIAGRAM], at_least=at_least)


def test_the_board_loads_with_no_error_and_no_network_request(shown):
    page, watch = shown
    assert page.locator("table.board").count() >= 1
    assert page.locator("#overall table.overall tbody tr").count() >= 1
    watch.assert_clean()


def test_every_chart_renders_with_a_non_zero_size(shown):
    page, watch = shown
    tables = page.locator("table.board").count()
    robustness = page.locator("svg.robustness").count()
    assert robustness == tables, "one robustness chart per board table"
    assert page.locator("svg.heatmap").count() >= tables
    svgs = page.locator("svg").count()
    assert assert_rendered(page, CHART_SELECTORS, at_least=1) >= svgs >= 1
    watch.assert_clean()


def test_critical_difference_diagrams_render_when_present(shown):
    """The committed synthetic records hold many methods in several (dataset, protocol, scenario) blocks,
    enough for the Friedman test: the board draws exactly one CD diagram, with a non-zero size."""
    page, watch = shown
    assert assert_cd_diagrams_rendered(page, at_least=1) == 1
    watch.assert_clean()


def test_a_critical_difference_diagram_inlined_in_the_board_renders(board):
    """mmbench/leaderboard/cd_diagram.py's SVG, inlined as render_html.py will inline it, lays out with a
    non-zero size in the board's page, beside the one the board draws itself."""
    page, watch = board
    drawn = assert_cd_diagrams_rendered(page)
    svg = cd_diagram(["stars", "shaspec", "early-fusion", "unimodal"], [1.25, 2.0, 3.1, 3.65], 1.2, title="CD")
    page.evaluate("(svg) => document.querySelector('main').insertAdjacentHTML('beforeend', svg)", svg)
    assert assert_cd_diagrams_rendered(page, at_least=1) == drawn + 1
    assert_rendered(page, CHART_SELECTORS, at_least=1)
    watch.assert_clean()


def test_the_size_check_catches_a_collapsed_chart(board):
    """The helpers above can fail: a zero-size `.cd-diagram` (or any zero-size svg) is reported."""
    page, _ = board
    drawn = assert_cd_diagrams_rendered(page)
    page.evaluate(
        """() => {
            const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
            svg.setAttribute("class", "cd-diagram");
            svg.setAttribute("width", "0");
            svg.setAttribute("height", "0");
            document.querySelector("main").appendChild(svg);
        }"""
    )
    with pytest.raises(AssertionError, match=r"zero size: svg\.cd-diagram \(0x0\)"):
        assert_cd_diagrams_rendered(page)
    with pytest.raises(AssertionError, match=r"svg\.cd-diagram \(0x0\)"):
        assert_rendered(page, CHART_SELECTORS)
    page.evaluate("""() => Array.from(document.querySelectorAll(".cd-diagram")).pop().setAttribute("width", "120")""")
    page.evaluate("""() => Array.from(document.querySelectorAll(".cd-diagram")).pop().setAttribute("height", "40")""")
    assert assert_cd_diagrams_rendered(page, at_least=1) == drawn + 1


def test_the_watch_catches_errors_and_blocks_network_requests(board):
    """The checks above can fail: a script error, a console error and a remote image are all caught, and
    the image is never fetched."""
    page, watch = board
    page.evaluate(
        """() => {
            console.error("broken on purpose");
            setTimeout(() => { throw new Error("thrown on purpose"); }, 0);
            const image = document.createElement("img");
            image.src = "https://example.invalid/chart.png";
            document.body.appendChild(image);
        }"""
    )
    page.wait_for_function("() => document.querySelector('img').complete")
    page.wait_for_timeout(50)  # lets the page error and the failed load reach the listeners
    assert "https://example.invalid/chart.png" in watch.requests
    assert any("broken on purpose" in line for line in watch.errors)
    assert any("thrown on purpose" in line for line in watch.errors)
    with pytest.raises(AssertionError, match="console/page errors"):
        watch.assert_clean()


NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _column(page: Any, table: str, header: int) -> list[dict[str, Any]]:
    """Each body row of `table` in page order: its sort key (data-sort), the number shown, and the row's
    method (to check whole rows move, not cells)."""
    return page.evaluate(
        """([table, header]) => Array.from(document.querySelector(table).tBodies[0].rows, (row) => {
            const cell = row.cells[header];
            return {key: cell.getAttribute("data-sort"), text: cell.textContent.trim(), row: row.cells[1].textContent};
        })""",
        [table, header],
    )


def _direction(page: Any, th: Any) -> str:
    """The direction the page shows for a sorted header: aria-sort, and the arrow drawn after the label."""
    state = th.get_attribute("aria-sort")
    arrow = page.evaluate("(th) => getComputedStyle(th, '::after').content", th.element_handle())
    assert state in ("ascending", "descending"), f"no sort direction on the clicked header: {state!r}"
    assert ("▲" if state == "ascending" else "▼") in arrow, f"header says {state} but shows {arrow!r}"
    return state


def _assert_sorted(column: list[dict[str, Any]], state: str) -> None:
    """Keys sorted in `state` order (cells without a value last), and the shown numbers agree."""
    present = [float(cell["key"]) for cell in column if cell["key"]]
    assert all(not cell["key"] for cell in column[len(present) :]), "rows without a value must come last"
    wanted = sorted(present, reverse=state == "descending")
    assert present == wanted, f"{state} sort gave {present}"
    shown = [float(NUMBER.search(cell["text"]).group()) for cell in column if cell["key"]]
    assert shown == sorted(shown, reverse=state == "descending"), f"shown values not {state}: {shown}"


@pytest.mark.parametrize("label", ["dsm only", "params (M)"])
def test_clicking_a_header_sorts_the_rows_and_clicking_again_reverses_them(board, label):
    page, watch = board
    table = "section#table-1 table.board"
    headers = [text.strip() for text in page.locator(f"{table} thead th").all_inner_texts()]
    header = headers.index(label)
    th = page.locator(f"{table} thead th").nth(header)
    before = _column(page, table, header)
    keys = [float(cell["key"]) for cell in before if cell["key"]]
    # the board comes ranked by another column: this one must not already be in either order
    assert keys != sorted(keys) and keys != sorted(keys, reverse=True), f"'{label}' is sorted before any click"
    pairs = sorted((cell["row"], cell["key"]) for cell in before)

    th.click()
    first = _direction(page, th)
    expected = "descending" if th.get_attribute("data-first") == "desc" else "ascending"
    assert first == expected
    after = _column(page, table, header)
    _assert_sorted(after, first)
    assert [cell["row"] for cell in after] != [cell["row"] for cell in before], "the click did not reorder rows"
    assert sorted((cell["row"], cell["key"]) for cell in after) == pairs, "cells moved without their rows"

    th.click()
    second = _direction(page, th)
    assert second != first
    again = _column(page, table, header)
    _assert_sorted(again, second)
    assert sorted((cell["row"], cell["key"]) for cell in again) == pairs
    others = page.locator(f"{table} thead th[aria-sort]").count()
    assert others == 1, "only the clicked header carries a sort direction"
    watch.assert_clean()
