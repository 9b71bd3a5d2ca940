"""The benchmark's figures as a table: throughput, ours over each alternative, targets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from jobs.bench import MEMORY_GROWTH_LIMIT, TARGETS, UNITS

if TYPE_CHECKING:
    from rich.console import JustifyMethod

LABELS = {
    "ours": "ours (mediajobs)", "seed_loop": "seeds' loop (predict per image)",
    "ray_data_plain": "Ray Data recipe (read_images)", "tf_data": "tf.data, one process",
    "ray_data_recipe": "Ray Data, Anyscale's benchmark (download, map, map, actors)",
    "decode_only": "decode only (D)", "model_only": "model only (M)", "ideal": "ideal 1/(1/D+1/M)",
    "decode_mfcc": "librosa load + MFCC", "single_process": "model.fit, one process",
    "ours_end_to_end": "ours, end to end (start-up, decode)",
    "ours_steady": "ours after its first rows (no start-up)",
    "in_process_decode_steady": "in_process_decode after its first rows",
    "daft": "Daft (download, decode, resize, @daft.cls model)",
    "ray_read_videos": "Ray Data read_videos (decord), resize map, actors",
    "ray_read_audio": "Ray Data read_audio, resample map, MFCC map_batches, actors",
}
# Daft's audio path is its own functions, not its image recipe: named apart in its section.
SECTION_LABELS = {("audio", "daft"): "Daft (audio_file, resample, MFCC batch func, @daft.cls model)"}


# What the rate after start-up is held against: the limit of its section.
STEADY_VERSUS = {"image": "ideal", "video": "decode_only"}


def render(figures: dict) -> Table:
    machine = figures["machine"]
    table = Table(title=f"mediajobs bench {figures['date']}: {machine['cpus']} CPUs, {machine['cpu_model']}",
                  title_justify="left")
    columns: list[tuple[str, JustifyMethod]] = [("section", "left"), ("runner", "left"), ("throughput", "right"),
                                                ("ours ÷ this", "right"), ("target", "right"), ("met", "center")]
    for column, justify in columns:
        table.add_column(column, justify=justify)
    targets = {(t[0], t[2]): t[3] for t in TARGETS}
    for section in UNITS:
        named = figures.get(section, {})
        for name, value in named.items():
            ratio = figures["ratios"].get(section, {}).get(name)
            wanted = targets.get((section, name))
            shown = "" if ratio is None else f"{ratio:,.2f}x"
            limit = named.get(STEADY_VERSUS.get(section, ""))
            if name.endswith("_steady") and limit:  # ours, and in_process_decode, after start-up
                shown = f"{value / limit:,.2f}x of {STEADY_VERSUS[section].replace('_', '-')}"
            label = SECTION_LABELS.get((section, name)) or LABELS.get(name, name)
            table.add_row(section, label, f"{value:,.1f} {UNITS[section]}", shown,
                          "" if wanted is None else f">= {wanted:g}x",
                          "" if wanted is None else ("yes" if ratio >= wanted else "NO"))
        table.add_section()
    memory = figures["memory"]
    growth = memory["growth"]
    table.add_row("memory", f"peak PSS, N = {memory['n']:,} images", _gib(memory["peak_bytes_n"]), "", "", "")
    table.add_row("memory", f"peak PSS, 5N = {5 * memory['n']:,} images", _gib(memory["peak_bytes_5n"]),
                  f"{growth:.2f}x of N", f"<= {MEMORY_GROWTH_LIMIT:g}x",
                  "yes" if 0 < growth <= MEMORY_GROWTH_LIMIT else "NO")
    return table


def _gib(value: float) -> str:
    return f"{value / 2 ** 30:.2f} GiB"
