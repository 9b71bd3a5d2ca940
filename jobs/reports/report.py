"""The morning report of a nightly scoring run: one self-contained HTML page per run.

It answers what the on-call engineer asks first: did the run stay within its error budget,
how much did it do and how fast, did the class mix or the model's confidence shift (label
bars and score histograms per modality), which objects were slow, which failed and why, and
what the least confident images and video frames look like. Charts and thumbnails are inline
PNGs, so the page opens from the bucket or a mail without anything else; every string from
the data is escaped, because object keys and error messages are untrusted.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from typing import TYPE_CHECKING

from jobs.errors import UsageError
from jobs.nightly.drift import largest_psi
from jobs.nightly.tables import TABLES
from jobs.reports.figures import SLOWEST_ROWS, THUMBNAILS, ReportFigures, figures_of_tables, read_figures
from jobs.reports.thumbnails import Thumbnail, lowest_confidence_thumbnails, thumbnails_for
from jobs.reports.trend import drift_rows, mix_text, night_row, trailing_summaries, trend_chart
from jobs.storage.objects import exists, filesystem_for, parse_uri, read_bytes, write_bytes

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Thumbnail", "lowest_confidence_thumbnails", "read_run_tables", "render_report", "rerender_report",
           "write_report"]

MODALITIES = ("image", "video", "audio")  # display order; other modalities follow, sorted
DECISIONS = ("new", "changed", "other-model", "retry", "unchanged", "deleted", "restored")
EXAMPLE_NAMES = {"image": "images", "video": "frames", "audio": "windows"}
MAX_BARS = 25  # beyond this a bar chart is unreadable: the rarest labels are summed as "other"


def read_run_tables(output_uri: str, run_date: str) -> dict[str, pa.Table]:
    """The tables a run committed for one date: partition `run_date=<run_date>` of each Delta
    table under the output (or that folder, in an output of plain Parquet folders).

    Returns:
        Table name -> table, without the `run_date` column. A table without rows for that
        date (e.g. no video route) has no entry.
    """
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    from jobs.storage.delta import open_table

    tables = {}
    for name in TABLES:
        table = open_table(parse_uri(output_uri).as_prefix().join(name))
        if table is not None:
            rows = table.to_pyarrow_table(filters=[("run_date", "=", run_date)])
            if rows.num_rows:
                tables[name] = rows.drop_columns(["run_date"])
            continue
        location = parse_uri(output_uri).join(name, f"run_date={run_date}")
        fs = filesystem_for(location)
        if fs.get_file_info(location.fs_path).type == pafs.FileType.Directory:
            tables[name] = pads.dataset(location.fs_path, filesystem=fs, format="parquet").to_table()
    return tables


def rerender_report(output_uri: str, run_date: str | None = None) -> tuple[str, str]:
    """Render again the report of the run that committed `run_date` (default: the latest
    committed date) from its summary and its tables as they are now.

    Returns:
        (run date, report URI).

    Raises:
        UsageError: nothing was committed under `output_uri`, or not that date.
    """
    from jobs.nightly.manifest import current_snapshot, snapshot_index

    committed = snapshot_index(current_snapshot(output_uri)).get("committed", {})
    if not committed:
        raise UsageError(f"{output_uri}: no committed incremental run here (no _manifest/CURRENT); give the "
                         "output URI of a score job with incremental: true")
    date = run_date or max(committed)
    if date not in committed:
        recent = ", ".join(sorted(committed)[-5:])
        raise UsageError(f"--run-date: {date} has no committed run under {output_uri}; the latest: {recent}")
    summary_uri = parse_uri(output_uri).join("runs", committed[date], "summary.json").uri
    if not exists(summary_uri):
        raise UsageError(f"{summary_uri} is missing; the run of {date} committed without it (deleted since?)")
    summary = json.loads(read_bytes(summary_uri))
    return date, write_report(output_uri, summary, read_figures(output_uri, date))


def write_report(output_uri: str, summary: dict, tables: dict[str, pa.Table] | ReportFigures) -> str:
    """Render the report with thumbnails and write it to `<output>/runs/<run_id>/report.html`.

    Args:
        tables: what `read_run_tables` returns, or the figures `read_figures` gathers (as
            a run's publish does: a stream, whatever the night's size).

    Returns:
        The URI of the written report.
    """
    figures = tables if isinstance(tables, ReportFigures) else figures_of_tables(tables, THUMBNAILS)
    trailing = trailing_summaries(output_uri, str(summary.get("run_date", "")))
    page = render_report(summary, figures, thumbnails_for(figures.candidates()), trailing)
    uri = parse_uri(output_uri).join("runs", str(summary["run_id"]), "report.html").uri
    write_bytes(uri, page.encode("utf-8"))
    return uri


# --- thumbnails -------------------------------------------------------------------------------


# --- tables -----------------------------------------------------------------------------------


def _modalities(summary: dict, figures: ReportFigures) -> list[str]:
    found = {m for m, counts in (summary.get("counts") or {}).items() if isinstance(counts, dict)} | figures.found
    return [m for m in MODALITIES if m in found] + sorted(found - set(MODALITIES))


# --- charts -----------------------------------------------------------------------------------


def _label_chart(labels: Counter) -> bytes:
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg renders the PNG
    from matplotlib.ticker import MaxNLocator

    counted = sorted(((name or "(none)", count) for name, count in labels.items()),
                     key=lambda pair: (-pair[1], pair[0]))
    if len(counted) > MAX_BARS:
        rest = counted[MAX_BARS - 1:]
        counted = counted[:MAX_BARS - 1] + [(f"other ({len(rest)} labels)", sum(c for _, c in rest))]
    figure = Figure(figsize=(6, 1 + 0.25 * len(counted)), dpi=90, layout="constrained")
    axes = figure.subplots()
    axes.barh(range(len(counted)), [count for _, count in counted], color="#4c72b0")
    # "$" would start matplotlib's math mode: a label such as "$x^{$" fails to render.
    axes.set_yticks(range(len(counted)), labels=[name[:40].replace("$", r"\$") for name, _ in counted])
    axes.invert_yaxis()
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no "2.5 objects" ticks
    axes.set_xlabel("objects")
    return _png_of_figure(figure)


def _score_histogram(bins) -> bytes:
    """The histogram of the scores, from their counts per bin (SCORE_BINS over [0, 1])."""
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6, 2.5), dpi=90, layout="constrained")
    axes = figure.subplots()
    edges = np.linspace(0, 1, len(bins) + 1)
    axes.hist(edges[:-1], bins=edges.tolist(), weights=bins, color="#dd8452")
    axes.set_xlabel("score (confidence of the label)")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("objects")
    return _png_of_figure(figure)


def _png_of_figure(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# --- HTML -------------------------------------------------------------------------------------


def render_report(summary: dict, tables: dict[str, pa.Table] | ReportFigures, thumbnails: list[Thumbnail],
                  trailing: list[dict] | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS and PNGs, no JavaScript).

    Args:
        summary: the run's `summary.json`.
        tables: what `read_run_tables` returns (missing or empty tables render as "none"),
            or the figures gathered from them (`jobs.reports.figures`).
        thumbnails: the lowest-confidence items to show, in display order.
        trailing: the summaries of the nights before, oldest first (`trend.trailing_summaries`).
    """
    figures = tables if isinstance(tables, ReportFigures) else figures_of_tables(tables)
    modalities = _modalities(summary, figures)
    sections = [_header(summary), _across_nights_section(summary, trailing or []),
                _counts_section(summary, modalities, figures),
                *(_modality_section(m, figures) for m in modalities),
                _slowest_section(figures), _errors_section(summary, figures), _thumbnails_section(thumbnails)]
    title = _e(f"{summary.get('spec_name', '?')} {summary.get('run_date', '')}: morning report")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(sections) + "\n</body></html>\n")


_NONE = '<p class="none">none</p>'
_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
td{overflow-wrap:anywhere}td.n{text-align:right}.badge{padding:.1em .6em;border-radius:.3em;color:#fff;font-weight:bold}
.ok{background:#2a7d2a}.exceeded{background:#c0392b}.none{color:#777;font-style:italic}
.grid{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0;width:160px;font-size:.8em;word-break:break-all}"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _number(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else _e(value if value is not None else "?")


def _percent(value: object) -> str:
    return f"{value:.2%}" if isinstance(value, (int, float)) else "?"


def _table(headers: list[str] | None, rows: list[list[object]]) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>" if headers else ""
    body = "".join("<tr>" + "".join(f'<td class="n">{_number(v)}</td>' if isinstance(v, (int, float))
                                    else f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{_e(anchor)}"><h2>{_e(title)}</h2>{body}</section>'


def _png_img(png: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{_e(alt)}">'


def _header(summary: dict) -> str:
    exceeded = bool(summary.get("error_budget_exceeded"))
    badge = '<span class="badge exceeded">EXCEEDED</span>' if exceeded else '<span class="badge ok">OK</span>'
    seconds, speed = summary.get("seconds"), summary.get("objects_per_s")
    facts: list[list[object]] = [
        ["run date", summary.get("run_date")], ["run id", summary.get("run_id")],
        ["input", summary.get("input")], ["output", summary.get("output")],
        ["started", summary.get("started_at")], ["finished", summary.get("finished_at")],
        ["duration", _duration(seconds) if isinstance(seconds, (int, float)) else "?"],
        ["throughput", f"{speed:,.2f} objects/s" if isinstance(speed, (int, float)) else "?"],
        ["listed", summary.get("listed")],
        *([f"model ({route})", model] for route, model in sorted((summary.get("model_ids") or {}).items())),
    ]
    return (f"<header><h1>{_e(summary.get('spec_name', '?'))}: nightly scoring report</h1>"
            f"<p>error rate {_percent(summary.get('error_rate'))} of objects "
            f"(budget {_percent(summary.get('max_error_rate'))}) {badge}</p>{_drift_line(summary)}"
            f"{_table(None, facts)}</header>")


def _drift_line(summary: dict) -> str:
    drift = summary.get("drift") or {}
    if not drift.get("nights"):
        return '<p>drift: <span class="none">no earlier night to compare with</span></p>'
    badge = ('<span class="badge exceeded">DRIFT</span>' if drift.get("exceeded")
             else '<span class="badge ok">stable</span>')
    return (f"<p>drift against the {len(drift['nights'])} nights before: largest PSI "
            f"{largest_psi(drift):.3f} (line {_e(drift.get('max_psi'))}) {badge}</p>")


def _across_nights_section(summary: dict, trailing: list[dict]) -> str:
    """Tonight beside the nights before it, and where tonight drifted."""
    if not trailing:
        return _section("across-nights", "Across nights", '<p class="none">the first night: nothing to compare</p>')
    rows = [night_row(s) for s in trailing] + [night_row(summary)]
    table = _table(["run date", "objects", "error rate", "objects/s", "class mix"],
                   [[r["run_date"], r["objects"], _percent(r["error_rate"]), r["objects_per_s"],
                     mix_text(r["class_mix"])] for r in rows])
    drift = drift_rows(summary.get("drift") or {})
    drift_table = (_table(["modality", "signal", "PSI", "verdict"], drift) if drift
                   else '<p class="none">no modality scored on the nights before</p>')
    return _section("across-nights", "Across nights",
                    _png_img(trend_chart(rows), "objects and error rate per night") + table
                    + f"<h3>Drift (population stability index against the nights before)</h3>{drift_table}")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _counts_section(summary: dict, modalities: list[str], figures: ReportFigures) -> str:
    counts, decisions = summary.get("counts") or {}, summary.get("decisions") or {}
    per_modality = [[m, counts.get(m, {}).get("predicted"), counts.get(m, {}).get("errors")] for m in modalities]
    skipped = f"<p>skipped: {_number(summary.get('skipped', counts.get('skipped')))} objects</p>"
    if figures.skipped:
        reasons = sorted(([reason, n] for reason, n in figures.skip_reasons.items()), key=lambda row: -row[1])
        skipped += _table(["skip reason", "objects"], reasons)
    return _section("counts", "Counts", _table(["modality", "predicted", "errors"], per_modality) + skipped
                    + f"<h3>Decisions</h3>{_table(list(DECISIONS), [[decisions.get(d) for d in DECISIONS]])}")


def _modality_section(modality: str, figures: ReportFigures) -> str:
    shown = figures.modalities.get(modality)
    if shown is None or not shown.objects:
        return _section(f"modality-{modality}", modality, '<p class="none">none: no predictions</p>')
    examples_name = EXAMPLE_NAMES.get(modality, "examples")
    return _section(f"modality-{modality}", modality,
                    f"<p>objects scored: {shown.objects:,} ({examples_name}: {shown.examples:,})</p>"
                    f"<h3>Class distribution</h3>{_png_img(_label_chart(shown.labels), f'labels of {modality}')}"
                    f"<h3>Scores</h3>{_png_img(_score_histogram(shown.score_bins), f'scores of {modality}')}")


def _slowest_section(figures: ReportFigures) -> str:
    """Fetch+decode time of scored and failed objects together: a slow failure costs as much."""
    slowest = []
    for name, outcome in (("predictions", "scored"), ("errors", "failed")):
        slowest += [[row["uri"], row["modality"], outcome, round(float(row["seconds"]), 3)]
                    for row in figures.slowest[name].to_pylist()]
    slowest = sorted(slowest, key=lambda row: -row[3])[:SLOWEST_ROWS]
    return _section("slowest", f"Slowest {SLOWEST_ROWS} objects (fetch + decode)",
                    _table(["uri", "modality", "outcome", "seconds"], slowest) if slowest else _NONE)


def _errors_section(summary: dict, figures: ReportFigures) -> str:
    if not figures.errors:
        return _section("errors", "Errors", _NONE)
    rows = figures.first_errors.to_pylist()
    more = figures.errors - len(rows)
    where = f"{str(summary.get('output', '<output>')).rstrip('/')}/errors/run_date={summary.get('run_date', '?')}/"
    note = f"<p>… and {more:,} more errors, in {_e(where)}</p>" if more > 0 else ""
    return _section("errors", f"Errors ({figures.errors:,})",
                    _table(["uri", "modality", "stage", "error"], [list(r.values()) for r in rows]) + note)


def _thumbnails_section(thumbnails: list[Thumbnail]) -> str:
    if not thumbnails:
        return _section("thumbnails", "Lowest confidence", _NONE)
    figures = "".join(f"<figure>{_png_img(t.png, f'{t.label} {t.score:.3f}')}<figcaption><b>{_e(t.label)}</b> "
                      f"{t.score:.3f}<br>{_e(t.detail)}<br>{_e(t.uri)}</figcaption></figure>" for t in thumbnails)
    return _section("thumbnails", "Lowest confidence", f'<div class="grid">{figures}</div>')
