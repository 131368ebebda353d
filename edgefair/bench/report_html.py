"""report.html: one self-contained page (inline CSS, a small inline script, embedded figures)."""

from __future__ import annotations

import base64
import html
import re
from typing import Any

from edgefair.bench import report_fairness, report_timing
from edgefair.bench.report_context import COLUMNS, ReportContext
from edgefair.bench.report_env import environment
from edgefair.bench.report_figures import Plot
from edgefair.bench.report_rows import ReportRow, _gap_text, _ms, _pct, _rss, _settings_text, _size, _sparsity
from edgefair.bench.report_rule import RULE, VERDICTS

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#ffffff; --alt:#f6f8fa; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg);
       margin: 0 auto; padding: 20px 28px 60px; max-width: 1360px; font-size: 14px; line-height: 1.45; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 0 0 14px; } code { font-family: "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.recs { list-style: none; padding: 0; margin: 0; }
.recs li { border: 1px solid var(--line); border-left: 6px solid #1a7f37; background: #f4fbf6; padding: 8px 12px;
           margin: 0 0 8px; border-radius: 4px; }
.recs li.none { border-left-color: #cf222e; background: #fff6f5; }
.rule { color: var(--muted); font-size: 13px; }
.tablewrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table.results { border-collapse: collapse; width: 100%; font-size: 12.5px; }
table.results th { position: sticky; top: 0; background: #eef1f4; text-align: left; padding: 6px 7px;
                   border-bottom: 1px solid var(--line); white-space: nowrap; }
table.results td { padding: 5px 7px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
table.results tbody tr:nth-child(even) { background: var(--alt); }
table.results td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
table.results td.name { white-space: nowrap; font-family: "DejaVu Sans Mono", monospace; font-size: 12px; }
tr.devstart td { border-top: 2px solid #8c959f; }
.small { display: block; color: var(--muted); font-size: 11px; }
.badge { display: inline-block; padding: 1px 6px; border-radius: 10px; font-size: 11px; white-space: nowrap; }
.b-emu { background: #ddf4ff; color: #0550ae; } .b-invalid { background: #fff1e5; color: #953800; font-weight: bold; }
.b-rec { background: #dafbe1; color: #116329; font-weight: bold; }
.verdict { display: inline-block; padding: 2px 8px; border-radius: 4px; font-weight: bold; font-size: 12px;
           white-space: nowrap; }
.v-pass { background: #dafbe1; color: #116329; } .v-insufficient-evidence { background: #fff8c5; color: #7d4e00; }
.v-accuracy-drop { background: #ffe7d1; color: #953800; } .v-gap-widened { background: #ffebe9; color: #a40e26; }
.v-reference { background: #ddf4ff; color: #0550ae; }
.v-not-audited { background: #eaeef2; color: #59636e; } .v-run-failed { background: #59636e; color: #ffffff; }
td.error { color: #a40e26; font-family: "DejaVu Sans Mono", monospace; font-size: 11.5px; word-break: break-word; }
td.emu { color: #8c959f; }
td.invalid { color: #953800; text-decoration: line-through; text-decoration-color: #bc4c00; }
figure { margin: 14px 0 22px; } figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: var(--muted); font-size: 12.5px; }
table.env { border-collapse: collapse; font-size: 12.5px; margin-bottom: 8px; }
table.env th { text-align: left; padding: 3px 14px 3px 0; color: var(--muted); font-weight: normal; white-space: nowrap;
               vertical-align: top; }
table.env td { padding: 3px 0; word-break: break-word; }
.envgrid { display: grid; grid-template-columns: repeat(auto-fit, minmax(400px, 1fr)); gap: 6px 28px; }
dl.legend { display: grid; grid-template-columns: max-content 1fr; gap: 3px 10px; font-size: 12.5px; margin: 10px 0; }
dl.legend dd { margin: 0; color: var(--muted); }
tbody.grp tr.grouphead th { background: #e6ebf0; text-align: left; padding: 5px 7px; font-size: 12.5px;
                            border-top: 2px solid #8c959f; }
table.results th.sortable { cursor: pointer; user-select: none; }
table.results th.sortable::after { content: " \\2195"; color: #8c959f; font-weight: normal; }
table.results th[aria-sort="ascending"]::after { content: " \\2191"; color: var(--fg); }
table.results th[aria-sort="descending"]::after { content: " \\2193"; color: var(--fg); }
.tools { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; margin: 0 0 8px; font-size: 13px; }
.tools input[type=search] { font: inherit; padding: 4px 8px; border: 1px solid var(--line); border-radius: 4px;
                            min-width: 16em; max-width: 100%; }
.note { border-left: 4px solid #0969da; background: #f1f8ff; padding: 8px 12px; margin: 10px 0; font-size: 13px; }
.note p { margin: 4px 0; }
.figs { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 560px), 1fr)); gap: 8px 18px; }
figure svg { width: 100%; height: auto; display: block; border: 1px solid #eaeef2; }
details.artefact { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; margin: 0 0 8px; }
details.artefact > summary { cursor: pointer; font-weight: bold; }
details.artefact h4 { font-size: 13.5px; margin: 12px 0 4px; }
dl.fp { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; font-size: 12px; margin: 4px 0; }
dl.fp dd { margin: 0; color: var(--muted); word-break: break-word; }
.bad { color: #a40e26; }
a.row { color: inherit; }
@media (max-width: 600px) {
  body { padding: 12px 10px 40px; font-size: 13px; }
  table.results { font-size: 11.5px; }
  .envgrid { grid-template-columns: 1fr; }
  /* the results table as one card per run: label and value side by side */
  #results thead { display: none; }
  #results, #results tbody, #results tr.grouphead, #results tr.grouphead th { display: block; width: 100%;
                                                                             box-sizing: border-box; }
  #results tr.grouphead th { white-space: normal; }
  #results tr.run { display: grid; grid-template-columns: 1fr 1fr; gap: 0 10px; padding: 6px 4px;
                    border-bottom: 1px solid var(--line); }
  #results tr.run td { display: block; border: 0; padding: 2px 0; text-align: left; white-space: normal; }
  #results tr.run td::before { content: attr(data-label); display: block; color: var(--muted); font-size: 10.5px; }
  #results tr.run td.name, #results tr.run td.error { grid-column: 1 / -1; }
  #results tr.run[hidden], #results tbody[hidden] { display: none; }
  .tablewrap.main { overflow-x: visible; border: 0; }
  .recs li, .note { word-break: break-word; }
}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _md_inline(text: str) -> str:
    """The few Markdown marks the recommendation text uses (** and `), as HTML."""
    out = _e(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def _verdict_badge(label: str, title: str = "") -> str:
    cls = "v-" + re.sub(r"[^a-z-]", "-", label.lower())
    t = f' title="{_e(title)}"' if title else ""
    return f'<span class="verdict {cls}"{t}>{_e(label)}</span>'


SCRIPT = r"""
(function () {
  var table = document.getElementById("results");
  if (!table) return;
  var bodies = Array.prototype.slice.call(table.tBodies);
  var heads = table.tHead.rows[0].cells;
  function key(row, i) {
    var c = row.cells[i];
    if (!c) return "";
    var v = c.getAttribute("data-v");
    if (v !== null) return v === "" ? Infinity : parseFloat(v);
    return c.textContent.trim().toLowerCase();
  }
  Array.prototype.forEach.call(heads, function (th, i) {
    if (!th.classList.contains("sortable")) return;
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      bodies.forEach(function (tb) {
        var rows = Array.prototype.slice.call(tb.querySelectorAll("tr.run"));
        rows.sort(function (a, b) {
          var x = key(a, i), y = key(b, i);
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { tb.appendChild(r); });
      });
    });
  });
  var box = document.getElementById("filter"), pass = document.getElementById("only-pass");
  var count = document.getElementById("shown");
  function filter() {
    var terms = box.value.toLowerCase().split(/\s+/).filter(Boolean), shown = 0;
    bodies.forEach(function (tb) {
      var any = false;
      tb.querySelectorAll("tr.run").forEach(function (r) {
        var text = r.textContent.toLowerCase();
        var ok = terms.every(function (t) { return text.indexOf(t) >= 0; }) &&
                 (!pass.checked || r.getAttribute("data-verdict") === "pass");
        r.hidden = !ok; if (ok) { any = true; shown++; }
      });
      tb.hidden = !any;
    });
    count.textContent = shown + " of " + table.querySelectorAll("tr.run").length + " runs shown";
  }
  var m = /[#&]filter=([^&]*)/.exec(location.hash);  // a link may carry a filter: report.html#filter=int8
  if (m) box.value = decodeURIComponent(m[1]);
  box.addEventListener("input", filter); pass.addEventListener("change", filter); filter();
})();
"""


def _num(value: float | None) -> str:
    """A cell's sort key (empty: sorts last)."""
    return "" if value is None else f"{value:.6g}"


def _name_cell(r: ReportRow, ctx: ReportContext) -> str:
    from edgefair.bench.report_artifacts import anchor

    name = f'<td class="name"><a class="row" href="#{anchor(r.name)}" title="{_e(r.name)}">{_e(r.name)}</a>'
    if ctx.recs[r.device].artifact == r.name:
        name += ' <span class="badge b-rec">recommended</span>'
    return name + f'<span class="small">{_e(r.target)}</span></td>'


def _device_cell(r: ReportRow) -> str:
    dev = f"<td>{_e(r.device)}"
    if r.emulated:
        dev += '<br><span class="badge b-emu">emulated: latency not comparable</span>'
    if r.ok and not r.valid:
        dev += (f'<br><span class="badge b-invalid" title="{_e("; ".join(r.invalid_reasons))}">'
                f"invalid: {_e(r.invalid_kind)}</span>")
    return dev + "</td>"


def _measured_cells(r: ReportRow) -> list[str]:
    if not r.ok:
        return [f'<td class="error" colspan="5">run failed: {_e(r.error)}</td>',
                f"<td>{_verdict_badge('run failed')}</td>"]
    lat_cls = "num invalid" if not r.valid else "num emu" if r.emulated else "num"
    title = f' title="{_e("; ".join(r.invalid_reasons))}"' if not r.valid else ""
    gap, attr = _gap_text(r)
    acc = _e(_pct(r.accuracy))
    if r.reference_accuracy is not None and r.accuracy is not None:
        acc += f'<span class="small">ref {_e(_pct(r.reference_accuracy))}</span>'
    return [f'<td class="{lat_cls}"{title} data-v="{_num(r.p50_s)}">{_e(_ms(r.p50_s))}</td>',
            f'<td class="{lat_cls}"{title} data-v="{_num(r.p90_s)}">{_e(_ms(r.p90_s))}</td>',
            f'<td class="num" data-v="{_num(r.peak_rss_kb)}">{_e(_rss(r.peak_rss_kb))}</td>',
            f'<td class="num" data-v="{_num(r.accuracy)}">{acc}</td>',
            f'<td class="num" data-v="{_num(r.largest_gap)}">{_e(gap)}'
            + (f'<span class="small">{_e(attr)}</span>' if attr else "") + "</td>",
            f"<td>{_verdict_badge(r.verdict_label, '; '.join(r.verdict_reasons))}</td>"]


def _html_row(r: ReportRow, ctx: ReportContext) -> str:
    cells = [_name_cell(r, ctx), _device_cell(r)]
    if ctx.many_settings:
        cells.append(f'<td class="small">{_e(_settings_text(r.settings))}</td>')
    cells += [f'<td class="num" data-v="{_num(r.size_bytes)}">{_e(_size(r.size_bytes))}</td>',
              f'<td class="num" data-v="{_num(r.gzip_bytes)}">{_e(_size(r.gzip_bytes))}</td>',
              f'<td class="num" data-v="{_num(r.sparsity_measured)}">{_e(_sparsity(r))}</td>']
    cells += _measured_cells(r)
    cols = COLUMNS[:2] + (["settings"] if ctx.many_settings else []) + COLUMNS[2:]
    labels = cols if r.ok else cols[:len(cells) - 2] + ["result", "verdict"]
    cells = [c.replace("<td", f'<td data-label="{_e(label)}"', 1) for c, label in zip(cells, labels, strict=True)]
    return f'<tr class="run" data-verdict="{_e(r.verdict_label)}">' + "".join(cells) + "</tr>"


def target_key(target: str) -> tuple[int, int, str]:
    """Targets in the declared order of edgefair.contracts.targets (unknown ones after, by name)."""
    from edgefair.contracts.targets import TARGET_NAMES

    return (0, TARGET_NAMES.index(target), "") if target in TARGET_NAMES else (1, 0, target)


def grouped(rows: list[ReportRow]) -> dict[tuple[str, str], list[ReportRow]]:
    """Rows per (device, target): devices in table order, targets declared, sparsity levels ascending."""
    out: dict[tuple[str, str], list[ReportRow]] = {}
    devices = list(dict.fromkeys(r.device for r in rows))
    for r in sorted(rows, key=lambda r: (devices.index(r.device), target_key(r.target),
                                         r.sparsity_requested or r.sparsity_measured or 0.0, r.name)):
        out.setdefault((r.device, r.target), []).append(r)
    return out


def _results_table(ctx: ReportContext) -> str:
    cols = COLUMNS[:2] + (["settings"] if ctx.many_settings else []) + COLUMNS[2:]
    sortable = {"artefact", "size", "gzip", "sparsity", "p50 ms", "p90 ms", "peak RSS MiB", "accuracy",
                "largest gap [CI]", "verdict", "device"}
    head = "".join(f'<th class="sortable" scope="col">{_e(c)}</th>' if c in sortable else f"<th>{_e(c)}</th>"
                   for c in cols)
    bodies = []
    for (device, target), rs in grouped(ctx.rows).items():
        levels = ", ".join(dict.fromkeys(_sparsity(r) for r in rs))
        n = f"{len(rs)} run{'s' if len(rs) != 1 else ''}"
        title = f"{device} · {target or 'unknown target'}: {n} (sparsity {levels})"
        bodies.append(f'<tbody class="grp"><tr class="grouphead"><th colspan="{len(cols)}">{_e(title)}</th></tr>'
                      + "".join(_html_row(r, ctx) for r in rs) + "</tbody>")
    return (f'<div class="tools"><input type="search" id="filter" placeholder="filter: name, device, verdict…" '
            f'aria-label="filter the table"><label><input type="checkbox" id="only-pass"> only verdict pass</label>'
            f'<span id="shown" class="rule"></span><span class="rule">Click a column to sort (within each target '
            f'group).</span></div><div class="tablewrap main"><table class="results" id="results"><thead><tr>{head}'
            f"</tr></thead>\n" + "\n".join(bodies) + "\n</table></div>")


def _figure(p: Plot) -> str:
    if p.svg:
        return f'<figure id="{_e(p.slug)}" class="plot">{p.svg}<figcaption>{_e(p.caption)}</figcaption></figure>'
    data = base64.b64encode(p.png).decode("ascii")
    return (f'<figure id="{_e(p.slug)}" class="plot"><img alt="{_e(p.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(p.caption)}</figcaption></figure>")


def _pareto(ctx: ReportContext) -> str:
    if not ctx.pareto:
        return "<p>No successful run with an accuracy.</p>"
    devices = list(dict.fromkeys(p.device for p in ctx.pareto))
    return "".join(f"<h3>{_e(d)}</h3><div class=\"figs\">" + "".join(_figure(p) for p in ctx.pareto if p.device == d)
                   + "</div>" for d in devices)


def _html(ctx: ReportContext) -> str:
    from edgefair.bench import report_artifacts, report_compression

    recs = "".join(
        f'<li class="{"" if r.artifact else "none"}">{_md_inline(r.text)}</li>' for r in ctx.recs.values())
    legend = "".join(f"<dt>{_verdict_badge(k)}</dt><dd>{_e(v)}</dd>" for k, v in VERDICTS.items())
    envs = "".join(
        f'<div><h3>{_e(d)}</h3><table class="env">'
        + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in environment(rs))
        + "</table></div>"
        for d, rs in ctx.devices.items())
    groups = "".join(_figure(p) for p in ctx.groups) or "<p>No audits stored.</p>"
    note = "".join(f"<p>{_e(t)}</p>" for t in report_artifacts.sparsity_note(ctx.rows))
    in_table_order = [r for rs in grouped(ctx.rows).values() for r in rs]
    sections = report_artifacts.html(in_table_order, {d: r.artifact for d, r in ctx.recs.items()}, _e)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgefair benchmark report</title>
<style>{CSS}</style></head>
<body>
<h1>edgefair benchmark report</h1>
<p class="meta">Generated {_e(ctx.generated)} from <code>{_e(ctx.db_path)}</code> &middot; {_e(ctx.counts)}</p>
<h2>Recommendation</h2>
<ul class="recs" id="recommendations">{recs}</ul>
<p class="rule">Rule: {_md_inline(RULE)}</p>
<h2>Artefacts × devices</h2>
{_results_table(ctx)}
<div class="note" id="sparsity-note"><strong>What sparsity buys on the measured kernels</strong>{note}</div>
<p class="rule">Rows are grouped by device and target, sparsity levels together; an artefact's name links to its
section below. Sizes are of the model file; sparsity is the measured share of zero weights; p50/p90 are
percentiles of the raw per-inference samples; peak RSS is the largest VmHWM over the agent's phases. Gaps are
in accuracy points: the largest difference in accuracy between two tested groups of one attribute (named below
the value), with its {_e(ctx.ci_label)}. Hover a verdict for the audit's reasons.</p>
<dl class="legend">{legend}</dl>
<h2 id="pareto">Pareto fronts</h2>
{_pareto(ctx)}
{report_fairness.html(ctx.fairness, _e, details=False)}
{report_compression.html(ctx.fairness, ctx.populations, _e)}
<h2>Per-group accuracy</h2>
{groups}
{sections}
{report_timing.html(ctx.op_tables, ctx.scaling, _e)}
<h2>Environment</h2>
<div class="envgrid">{envs}</div>
<script>{SCRIPT}</script>
</body></html>
"""
