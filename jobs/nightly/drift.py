"""Has tonight's archive drifted from the nights before? The population stability index (PSI)
of tonight's class mix and score histogram against the trailing nights', per modality.

    PSI = sum over bins of (p - q) * ln(p / q)

with p tonight's share of a bin (a class, or a score bin over [0, 1]) and q the trailing
nights' pooled share, each bin counted with half an object more on both sides (additive
smoothing): a class that appears or vanishes still counts heavily, without dividing by
zero, while one stray object in an empty bin of a small night does not read as drift. The
scores are compared in PSI_SCORE_BINS bins (pairs of the summary's SCORE_BINS): fewer,
fuller bins, as PSI wants. The usual reading: below 0.1 stable, 0.1 to 0.25
a shift worth a look, above 0.25 a shift (the spec's `drift.max_psi` sets the line, and
`drift.nights` how many trailing nights are pooled). The figures come from each night's `summary.json` (`class_mix`,
`score_bins`): the trailing nights are a few small reads, not their tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

SCORE_BINS = 20  # the score histogram's bins over [0, 1] (summary.json, the report)
PSI_SCORE_BINS = 10  # the scores' bins for PSI: SCORE_BINS summed in pairs
SMOOTHING = 0.5  # objects added to every bin of both distributions
SIGNALS = ("class_mix", "scores")


def psi(tonight: Mapping[str, float], baseline: Mapping[str, float]) -> float:
    """The PSI of two distributions given as counts per bin (any scale; normalised here)."""
    bins = set(tonight) | set(baseline)
    total_p, total_q = sum(tonight.values()), sum(baseline.values())
    if not bins or total_p <= 0 or total_q <= 0:
        return 0.0
    total_p += SMOOTHING * len(bins)
    total_q += SMOOTHING * len(bins)
    value = 0.0
    for name in bins:
        p = (tonight.get(name, 0) + SMOOTHING) / total_p
        q = (baseline.get(name, 0) + SMOOTHING) / total_q
        value += (p - q) * math.log(p / q)
    return value


def _bins(counts: Sequence[float]) -> dict[str, float]:
    """A score histogram of SCORE_BINS as PSI_SCORE_BINS bins."""
    width = SCORE_BINS // PSI_SCORE_BINS
    return {str(i): float(sum(counts[i * width:(i + 1) * width])) for i in range(PSI_SCORE_BINS)} if counts else {}


def night_drift(class_mix: Mapping[str, Mapping[str, int]], score_bins: Mapping[str, Sequence[int]],
                trailing: Sequence[Mapping], max_psi: float) -> dict:
    """Tonight against the trailing nights' summaries (those that carry the figures).

    Returns:
        `{"max_psi", "nights" (the dates compared with), "modalities": {media: {"class_mix":
        psi, "scores": psi}}, "exceeded"}`; a modality the trailing nights never scored has no
        entry (nothing to drift from).
    """
    modalities: dict[str, dict[str, float]] = {}
    compared = [s for s in trailing if isinstance(s.get("class_mix"), dict)]
    for media in sorted(class_mix):
        pooled_mix: dict[str, float] = {}
        pooled_bins = [0.0] * SCORE_BINS
        for summary in compared:
            for label, n in (summary["class_mix"].get(media) or {}).items():
                pooled_mix[label] = pooled_mix.get(label, 0.0) + n
            for i, n in enumerate((summary.get("score_bins") or {}).get(media) or []):
                pooled_bins[i] += n
        if not pooled_mix:
            continue
        modalities[media] = {"class_mix": round(psi(dict(class_mix[media]), pooled_mix), 6),
                             "scores": round(psi(_bins(score_bins.get(media, [])), _bins(pooled_bins)), 6)}
    exceeded = any(value > max_psi for signals in modalities.values() for value in signals.values())
    return {"max_psi": max_psi, "nights": [s.get("run_date") for s in compared], "modalities": modalities,
            "exceeded": exceeded}


def largest_psi(drift: Mapping) -> float:
    """The largest PSI of any modality and signal (0 when nothing was compared)."""
    return max((v for signals in (drift.get("modalities") or {}).values() for v in signals.values()), default=0.0)
