"""bench report: the HTML/Markdown report from a results database built with the real Store."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from edgefair.bench.report import TIE_TOLERANCE, ReportError, load_rows, write_report
from edgefair.bench.store import Store
from tests.bench.report_fixtures import build_db, mixed, none_pass

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def mixed_db(tmp_path_factory) -> Path:
    return build_db(tmp_path_factory.mktemp("db") / "results.db", mixed())


@pytest.fixture(scope="module")
def report(mixed_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return write_report(mixed_db, out)


class Page(HTMLParser):
    """Counts what the tests look for in report.html (or Chromium's DOM dump)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.in_results = self.in_tbody = False
        self.rows: list[list[str]] = []
        self.imgs: list[dict[str, str]] = []
        self.svgs = 0
        self.external: list[str] = []
        self.scripts = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table" and a.get("id") == "results":
            self.in_results = True
        elif tag == "tbody" and self.in_results:
            self.in_tbody = True
        elif tag == "tr" and self.in_tbody:
            self.rows.append([])
        elif tag == "td" and self.in_tbody:
            self._cell = []
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "svg":
            self.svgs += 1
        elif tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if re.match(r"\s*(https?:)?//", a.get(key, "")):
                self.external.append(a[key])

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self.rows:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tbody":
            self.in_tbody = False
        elif tag == "table":
            self.in_results = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data + " ")


def parse(text: str) -> Page:
    p = Page()
    p.feed(text)
    return p


def check_page(text: str, n_runs: int) -> Page:
    page = parse(text)
    assert len(page.rows) == n_runs, "one table row per stored run"
    plots = [i for i in page.imgs if i.get("src", "").startswith("data:image/png;base64,")]
    assert plots or page.svgs, "the page has figures"
    for img in plots:
        data = base64.b64decode(img["src"].split(",", 1)[1])
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert page.external == [] and page.scripts == 0
    return page


# ---------------------------------------------------------------- content
def test_report_is_self_contained_and_complete(report, mixed_db):
    text = report.html.read_text()
    with Store(mixed_db) as s:
        runs = s.runs()
    page = check_page(text, len(runs))
    assert len(page.imgs) == len(report.plots)  # every plot embedded
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert not re.search(r"https?://", text)
    by = {(r[0].split()[0], r[1].split()[0]): " | ".join(r) for r in page.rows}
    assert len(by) == len(runs)
    failed = by[("onnx-fp16-s0.5", "pi4")]
    assert "run failed: onnxruntime: [ONNXRuntimeError]" in failed and "NOT_IMPLEMENTED" in failed
    assert "invalid: throttled" in by[("onnx-int8-s0", "pi4")]
    emu = [v for (n, d), v in by.items() if d == "pi4-emu"]
    assert emu and all("emulated: latency not comparable" in v for v in emu)
    assert not any("emulated" in v for (n, d), v in by.items() if d != "pi4-emu")
    # largest gap with its interval and attribute, and the verdicts
    gw = by[("tflite-int8-s0.9", "local")]
    assert re.search(r"\d+\.\d pt \[\d+\.\d, \d+\.\d\] gender", gw) and "gap-widened" in gw
    assert "accuracy-drop" in by[("tflite-fp16-s0", "local")]
    for verdict in ("pass", "gap-widened", "accuracy-drop", "run failed"):
        assert f'class="verdict v-{verdict.replace(" ", "-")}"' in text
    # environment fingerprint per device
    for field in ("Cortex-A72", "ondemand", "temperature after", "onnxruntime", "Python", "threads"):
        assert field in text
    # no temporary file left behind
    assert not [p for p in report.html.parent.rglob("*") if p.name.endswith(".tmp")]


def test_markdown_links_the_written_plots(report):
    md = report.markdown.read_text()
    links = re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", md)
    assert sorted(links) == sorted(str(p.relative_to(report.markdown.parent)) for p in report.plots)
    for p in report.plots:
        assert p.read_bytes().startswith(PNG_MAGIC)
    assert {p.name for p in report.plots} >= {"pareto-local.png", "pareto-pi4.png", "pareto-pi4-emu.png",
                                             "groups-gender.png", "groups-age.png"}
    table = [ln for ln in md.splitlines() if ln.startswith("| `")]
    assert len(table) == report.n_rows == 18
    assert "(emulated: latency not comparable)" in md and "⚠ invalid" in md and "run failed" in md


def _expected_pick(rows):
    """RULE, written again from the rows: pass + valid, lowest p50, near-ties -> smaller gzip."""
    ok = [r for r in rows if r.ok and r.verdict == "pass" and r.valid]
    if any(r.emulated for r in rows):
        return min(ok, key=lambda r: (r.gzip_bytes, -r.accuracy)).name
    fastest = min(r.p50_s for r in ok)
    tied = [r for r in ok if r.p50_s <= fastest * (1 + TIE_TOLERANCE)]
    return min(tied, key=lambda r: (r.gzip_bytes, r.p50_s)).name


def test_recommendation_follows_the_rule(report, mixed_db):
    rows = load_rows(mixed_db)
    recs = {r.device: r for r in report.recommendations}
    assert set(recs) == {"local", "pi4", "pi4-emu"}
    for device, rec in recs.items():
        mine = [r for r in rows if r.device == device]
        assert rec.artifact == _expected_pick(mine), device
        picked = next(r for r in mine if r.name == rec.artifact)
        assert picked.verdict == "pass" and picked.valid
    # the fixture's p50 of onnx-int8-s0 and tflite-int8-s0.5 on local are within 2%: gzip decides
    assert recs["local"].artifact == "tflite-int8-s0.5" and "ties" in recs["local"].text
    assert "onnx-int8-s0" in recs["pi4"].text and "invalid" in recs["pi4"].text  # throttled: not considered
    assert recs["pi4-emu"].emulated and "gzip" in recs["pi4-emu"].text
    assert report.recommendation is recs["local"]
    text = report.html.read_text()
    assert "recommended" in text and "Rule:" in text
    d = report.to_dict()
    assert d["recommendation"]["artifact"] == "tflite-int8-s0.5" and d["rows"] == 18


def test_none_passing_says_so_and_names_the_best_candidate(tmp_path):
    db = build_db(tmp_path / "r.db", none_pass())
    info = write_report(db, tmp_path / "out")
    (rec,) = info.recommendations
    assert rec.artifact is None and info.recommendation is rec
    assert rec.candidate == "tflite-int8-s0.9"  # the fastest audited one
    assert "gap" in rec.reason and "grew" in rec.reason
    for f in (info.html, info.markdown):
        body = f.read_text()
        assert "no artefact passes" in body and "tflite-int8-s0.9" in body and "gap-widened" in body


def test_empty_or_missing_database_is_one_clear_error(tmp_path):
    empty = tmp_path / "empty.db"
    Store(empty).close()
    with pytest.raises(ReportError, match=r"empty\.db.*no runs") as e:
        write_report(empty, tmp_path / "out")
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    missing = tmp_path / "nope" / "results.db"
    with pytest.raises(ReportError, match="results.db: no results database"):
        write_report(missing, tmp_path / "out")
    assert not missing.exists() and not (tmp_path / "out" / "report.html").exists()


def test_rewrite_replaces_files_and_drops_stale_plots(mixed_db, tmp_path):
    out = tmp_path / "out"
    stale = out / "plots" / "groups-skin_tone.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    keep = out / "plots" / "mine.png"
    keep.write_bytes(b"user file")
    info = write_report(mixed_db, out)
    assert not stale.exists() and keep.exists()
    assert info.html.stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------- headless Chromium
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if found:
        return found
    # The CI installs it (scripts/ci-report-packages.sh); try the same here, as root or with sudo.
    if os.geteuid() == 0 or shutil.which("sudo"):
        subprocess.run(["bash", str(REPO / "scripts" / "ci-report-packages.sh")], capture_output=True,
                       timeout=900, check=False)
    return shutil.which("chromium")


def test_report_renders_in_headless_chromium(report, mixed_db, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is missing and could not be installed (scripts/ci-report-packages.sh)")
    url = report.html.resolve().as_uri()
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    proc = subprocess.run([*base, f"--screenshot={shot}", "--window-size=1400,2400", url],
                          capture_output=True, text=True, timeout=180)
    assert shot.is_file(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    with Store(mixed_db) as s:
        check_page(dom.stdout, len(s.runs()))
    assert "Artefacts × devices" in dom.stdout

    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1400, 2400)
        px = np.asarray(im.convert("L"), dtype=np.float64)
    assert px.std() > 15, "the screenshot is blank"
    dark = (px < 128).mean()
    assert 0.01 < dark < 0.5, f"share of dark pixels {dark:.3f}: text and figures expected on a light page"
    keep = os.environ.get("EDGEFAIR_REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
