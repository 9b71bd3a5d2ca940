"""The morning report's view across nights: the trailing nights' figures beside tonight's
(objects, error rate, throughput, class mix) and tonight's drift against them
(`summary.json`'s `drift`, measured at commit by `jobs.nightly.drift`).

The trailing nights are read from their own summaries (a few small objects), found through
the ledger's index of committed dates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from jobs.storage.objects import exists, parse_uri, read_bytes

TREND_NIGHTS = 14  # nights shown in the trend (drift pools the spec's `drift.nights`)


def trailing_summaries(output_uri: str, run_date: str, nights: int = TREND_NIGHTS,
                       committed: dict[str, str] | None = None) -> list[dict]:
    """The summaries of the last `nights` committed dates before `run_date`, oldest first
    (a date whose summary is gone is left out). `committed` (date -> run id): the ledger's
    index as the caller read it; by default, as it is now."""
    from jobs.nightly.manifest import current_snapshot, snapshot_index

    if committed is None:
        committed = snapshot_index(current_snapshot(output_uri)).get("committed", {})
    summaries = []
    for date in sorted(d for d in committed if d < run_date)[-nights:]:
        uri = parse_uri(output_uri).join("runs", committed[date], "summary.json").uri
        if exists(uri):
            summaries.append(json.loads(read_bytes(uri)))
    return summaries


def night_row(summary: Mapping) -> dict:
    """One night's trend figures from its summary."""
    counts = summary.get("counts") or {}
    scored = sum(c.get("predicted", 0) for c in counts.values() if isinstance(c, dict))
    errors = sum(c.get("errors", 0) for c in counts.values() if isinstance(c, dict))
    return {"run_date": summary.get("run_date"), "objects": scored + errors, "error_rate": summary.get("error_rate"),
            "objects_per_s": summary.get("objects_per_s"), "class_mix": summary.get("class_mix") or {}}


def mix_text(class_mix: Mapping[str, Mapping[str, int]], top: int = 3) -> str:
    """"image: cat 61%, dog 30%, bird 9%; video: ..." (the `top` largest labels of each modality)."""
    parts = []
    for media in sorted(class_mix):
        counts = class_mix[media]
        total = sum(counts.values())
        if total:
            largest = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:top]
            parts.append(f"{media}: " + ", ".join(f"{label} {n / total:.0%}" for label, n in largest))
    return "; ".join(parts) or "-"


def trend_chart(rows: Sequence[Mapping]) -> bytes:
    """Objects per night (bars) and the error rate (line), tonight last."""
    import io

    from matplotlib.figure import Figure

    dates = [str(r["run_date"]) for r in rows]
    figure = Figure(figsize=(7, 2.8), dpi=90, layout="constrained")
    axes = figure.subplots()
    axes.bar(range(len(rows)), [r["objects"] for r in rows], color="#4c72b0")
    axes.set_ylabel("objects")
    axes.set_xticks(range(len(rows)), labels=[d[5:] for d in dates], rotation=45, fontsize=8)
    rates = axes.twinx()
    rates.plot(range(len(rows)), [100 * float(r["error_rate"] or 0) for r in rows], color="#c0392b", marker="o")
    rates.set_ylabel("error rate %")
    rates.set_ylim(bottom=0)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def drift_rows(drift: Mapping) -> list[list[object]]:
    """Per modality and signal: the PSI and whether it crossed the spec's line."""
    line = drift.get("max_psi")
    rows: list[list[object]] = []
    for media, signals in sorted((drift.get("modalities") or {}).items()):
        for signal, value in sorted(signals.items()):
            rows.append([media, signal, round(float(value), 4),
                         "DRIFT" if isinstance(line, (int, float)) and value > line else "stable"])
    return rows
