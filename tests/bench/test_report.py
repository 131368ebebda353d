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
        elif tag == "tr" and self.in_tbody and "run" in a.get("class", "").split():
            self.rows.append([])
        elif tag == "td" and self.in_tbody and self.rows:
            self._cell = []
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "svg":
            self.svgs += 1
        elif tag == "script":
            self.scripts += 1
            self.external += [a["src"]] if a.get("src") else []
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


def check_page(text: str, n_runs: int, report=None) -> Page:
    page = parse(text)
    assert len(page.rows) == n_runs, "one table row per stored run"
    plots = [i for i in page.imgs if i.get("src", "").startswith("data:image/png;base64,")]
    assert plots or page.svgs, "the page has figures"
    for img in plots:
        data = base64.b64decode(img["src"].split(",", 1)[1])
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert page.external == [] and page.scripts == 1, "one inline script, nothing fetched"
    if report is not None:  # every plot: Pareto fronts as inline SVG, per-group figures as PNG
        assert page.svgs == sum(p.name.startswith("pareto-") for p in report.plots)
        assert len(plots) == sum(p.name.startswith("groups-") for p in report.plots)
    return page


# ---------------------------------------------------------------- content
def test_report_is_self_contained_and_complete(report, mixed_db):
    text = report.html.read_text()
    with Store(mixed_db) as s:
        runs = s.runs()
    page = check_page(text, len(runs), report)
    assert "<link" not in text and "@import" not in text
    assert not re.search(r"url\((?!#)", text), "only in-document references (the SVGs' clip paths)"
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
    assert {p.name for p in report.plots} >= {f"pareto-{d}-{k}.png" for d in ("local", "pi4", "pi4-emu")
                                              for k in ("latency", "size")} | {"groups-gender.png", "groups-age.png"}
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


@pytest.mark.parametrize("width,height", [(1366, 2400), (390, 2400)], ids=["desktop", "phone"])
def test_report_renders_in_headless_chromium(report, mixed_db, tmp_path, width, height):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is missing and could not be installed (scripts/ci-report-packages.sh)")
    url = report.html.resolve().as_uri()
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},{height}"]
    shot = tmp_path / "report.png"
    proc = subprocess.run([*base, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=180)
    assert shot.is_file(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    # --dump-dom prints the DOM after the inline script ran (it writes the "N of M runs shown" count)
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    with Store(mixed_db) as s:
        n_runs = len(s.runs())
    page = check_page(dom.stdout, n_runs, report)
    assert f"{n_runs} of {n_runs} runs shown" in dom.stdout, "the table script ran"
    assert "Artefacts × devices" in dom.stdout and 'id="recommendations"' in dom.stdout
    assert report.recommendation.artifact in dom.stdout.split('id="recommendations"')[1].split("</ul>")[0]
    assert len({tuple(r[:2]) for r in page.rows}) == n_runs
    if width == 1366:  # the filter script, driven by the page's #filter= hash
        hit = subprocess.run([*base, "--dump-dom", url + "#filter=tflite-int8%20local"], capture_output=True,
                             text=True, timeout=180).stdout
        want = sum(r.name.startswith("tflite-int8") and r.device == "local" for r in load_rows(mixed_db))
        assert want and f"{want} of {n_runs} runs shown" in hit
        assert len(re.findall(r'<tr class="run"[^>]*\bhidden', hit)) == n_runs - want, "the others are hidden"

    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (width, height)
        px = np.asarray(im.convert("L"), dtype=np.float64)
    assert px.std() > 15, "the screenshot is blank"
    dark = (px < 128).mean()
    assert 0.01 < dark < 0.5, f"share of dark pixels {dark:.3f}: text and figures expected on a light page"
    keep = os.environ.get("EDGEFAIR_REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep.replace(".png", f"-{width}.png"))


# ---------------------------------------------------------------- Pareto figures, table, sections
def _label_and_marker_boxes(fig, gid):
    """Rendered label boxes and marker boxes (display pixels) of one Pareto panel."""
    from matplotlib.transforms import Bbox

    fig.figure.canvas.draw()
    renderer = fig.figure.canvas.get_renderer()
    ax = fig.figure.axes[0]
    labels = [t for t in ax.texts if (t.get_gid() or "").startswith(f"{gid}-lbl-")]
    boxes = [t.get_window_extent(renderer) for t in labels]
    markers = []
    for coll in ax.collections:
        for (x, y), size in zip(coll.get_offsets(), np.broadcast_to(coll.get_sizes(), len(coll.get_offsets())),
                                strict=True):
            cx, cy = ax.transData.transform((x, y))
            r = 0.5 * np.sqrt(size) * fig.figure.dpi / 72
            markers.append(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))
    return labels, boxes, markers


def _crowded_points():
    """Twenty-four artefacts in a tight cloud, several passing, one recommended, a reference."""
    from edgefair.bench.report_plots import ParetoPoint

    rng = np.random.default_rng(3)
    pts = []
    for i in range(24):
        verdict = "reference" if i == 0 else ("pass" if i % 3 else "gap-widened")
        pts.append(ParetoPoint(name=f"tflite-int8-dynamic-range-s0.{i:02d}", p50_ms=float(0.5 + 0.1 * rng.random()),
                               gzip_kib=float(300 + 40 * rng.random()), accuracy=float(0.80 + 0.04 * rng.random()),
                               gap_pt=float(10 * rng.random()), verdict=verdict, valid=i != 5, recommended=i == 4))
    return pts


def _check_leaders(fig, labels, boxes):
    """A label moved away from its marker (> 18 px) has a leader line that ends at the label's box."""
    ax = fig.figure.axes[0]
    leaders = [t for t in ax.texts if not t.get_text() and t.arrow_patch is not None]
    ends = [ax.transData.transform(t.xyann) for t in leaders]
    for label, box in zip(labels, boxes, strict=True):
        px, py = ax.transData.transform(label.xy)
        nx, ny = min(max(px, box.x0), box.x1), min(max(py, box.y0), box.y1)
        if np.hypot(nx - px, ny - py) >= 18:
            assert any(np.hypot(ex - nx, ey - ny) < 1.0 for ex, ey in ends), f"no leader to {label.get_text()!r}"


@pytest.mark.parametrize("kind", ["latency", "size"])
def test_pareto_labels_hit_no_label_and_no_marker(mixed_db, kind):
    from edgefair.bench.report_figures import pareto_points
    from edgefair.bench.report_plots import pareto_panel
    from edgefair.bench.report_rule import recommend

    rows = [r for r in load_rows(mixed_db) if r.device == "local"]
    cases = {"fixture": pareto_points(rows, recommend("local", rows)), "crowded": _crowded_points()}
    for case, pts in cases.items():
        fig = pareto_panel("local", pts, kind=kind, emulated=False, gap_max=10.0, gid="t")
        labels, boxes, markers = _label_and_marker_boxes(fig, "t")
        texts = [t.get_text() for t in labels]
        assert any(t.startswith("reference: ") for t in texts) and any("recommended" in t for t in texts), case
        for i, b in enumerate(boxes):
            for j, other in enumerate(boxes[i + 1:], i + 1):
                assert not b.overlaps(other), f"{case}: label {texts[i]!r} overlaps {texts[j]!r}"
            hit = [m for m in markers if b.overlaps(m)]
            assert not hit, f"{case}: label {texts[i]!r} covers a marker"
        _check_leaders(fig, labels, boxes)
        assert all(len(t.replace("reference: ", "").replace("\u2605 ", "").replace(" (recommended)", "")) <= 18
                   for t in texts), "long names are shortened"
        svg = fig.svg()
        assert "<title>tflite-int8-dynamic-range-s0.04</title>" in svg or case == "fixture", "full name on hover"
        legend = fig.figure.axes[0].get_legend().get_window_extent()
        assert legend.y1 <= fig.figure.axes[0].get_window_extent().y0, "the legend sits outside the data axes"


def test_pareto_front_holds_only_what_the_rule_considers(mixed_db):
    from edgefair.bench.report_figures import pareto_points
    from edgefair.bench.report_plots import pareto_optimal
    from edgefair.bench.report_rule import recommend

    rows = [r for r in load_rows(mixed_db) if r.device == "local"]
    pts = pareto_points(rows, recommend("local", rows))
    fastest = min(pts, key=lambda p: p.p50_ms)
    assert fastest.verdict == "gap-widened"  # the fixture's fastest artefact fails its audit ...
    for kind in ("latency", "size"):
        front = pareto_optimal(pts, kind=kind)
        assert front and all(p.verdict == "pass" for p in front)
        assert fastest not in front  # ... so it is muted, not ringed
        assert any(p.recommended for p in front)


def test_table_is_grouped_by_target_and_sections_cover_every_artefact(report, mixed_db):
    from edgefair.bench.report_artifacts import anchor, sparsity_findings

    text = report.html.read_text()
    rows = load_rows(mixed_db)
    bodies = re.findall(r'<tbody class="grp">(.*?)</tbody>', text, re.S)
    assert len(bodies) == len({(r.device, r.target) for r in rows})
    for body in bodies:  # one device and one target per group, sparsity ascending
        names = re.findall(r'<td[^>]* class="name"><a class="row" href="#[^"]+" title="([^"]+)"', body)
        by_name = {r.name: r for r in rows}
        assert names and len({by_name[n].target for n in names}) == 1
        levels = [by_name[n].sparsity_requested for n in names]
        assert levels == sorted(levels)
    for r in rows:
        assert f'id="{anchor(r.name)}"' in text
    section = text.split(f'id="{anchor("tflite-int8-s0.9")}"')[1].split("</details>")[0]
    assert "Per-class recall" in section and "gap-widened" in section and "sha256" in section
    assert section.index(">female<") < section.index(">male<")
    # the sparsity note, from the numbers
    (f,) = [f for f in sparsity_findings(rows) if f.device == "local" and f.target == "tflite-int8"]
    p50 = {r.sparsity_measured: r.p50_s for r in rows if r.device == "local" and r.target == "tflite-int8"}
    assert [p for _, p in f.levels] == [p50[k] for k in sorted(p50)]
    note = text.split('id="sparsity-note"')[1].split("</div>")[0]
    assert f"{100 * f.spread:.1f} %" in note and "no structured-pruning artefact" in note


def test_group_order_is_declared_or_by_size():
    from edgefair.bench.report_groups import group_order

    assert group_order({"dark": 160, "light": 1112, "medium": 330}) == ["light", "medium", "dark"]
    assert group_order({"50+": 3, "18-29": 9, "30-49": 5, "unknown": 40}) == ["18-29", "30-49", "50+", "unknown"]
    assert group_order({"b": 1, "a": 5, "c": 5}) == ["a", "c", "b"]

