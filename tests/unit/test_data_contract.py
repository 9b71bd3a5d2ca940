"""The data contract of incremental score jobs: the schemas of every Delta table, the
ledger and summary.json are pinned here, and docs/outputs.md documents each column. A change
that breaks readers must change this file, on purpose. No Ray, no storage."""

from __future__ import annotations

import re

import pytest

from jobs.nightly.manifest import ledger_schema
from jobs.nightly.tables import SCHEMAS, SUMMARY_FIELDS, TABLES
from support.paths import ROOT

CONTRACT_DOC = ROOT / "docs" / "outputs.md"
PREDICTION = "label: string, score: float, top_labels: list<string>, top_scores: list<float>"
STAMPS = "model_id: string, run_id: string, scored_at: timestamp[us, tz=UTC]"  # on every row of every table
PINNED = {
    "predictions": "uri: string, etag: string, size: int64, modality: string, route: string, " + PREDICTION
                   + ", examples: int32, seconds: float, warning: string, " + STAMPS,
    "frames": "uri: string, frame_index: int64, timestamp_s: double, " + PREDICTION + ", " + STAMPS,
    "windows": "uri: string, window_start_s: double, window_end_s: double, " + PREDICTION + ", " + STAMPS,
    "errors": "uri: string, etag: string, size: int64, modality: string, route: string, stage: string, "
              "error: string, seconds: float, " + STAMPS + ", superseded_on: string",
    "skipped": "uri: string, etag: string, size: int64, reason: string, " + STAMPS,
    "manifest": "uri: string, etag: string, size: int64, model_id: string, run_id: string, run_date: string, "
                "outcome: string, stage: string, deleted_on: string",
}
PINNED_SUMMARY = ("run_id run_date spec_name input output started_at finished_at seconds listed objects_per_s counts "
                  "skipped resumed decisions model_ids error_rate max_error_rate error_budget_exceeded class_mix "
                  "score_bins drift tables").split()


def _described(schema) -> str:
    return ", ".join(f"{f.name}: {str(f.type).replace('<item: ', '<').replace('<element: ', '<')}" for f in schema)


def _schemas() -> dict:
    return {**{name: SCHEMAS[name]() for name in TABLES}, "manifest": ledger_schema()}


@pytest.mark.parametrize("table", [*TABLES, "manifest"])
def test_table_schemas_are_pinned(table):
    assert _described(_schemas()[table]) == PINNED[table]


def test_summary_fields_are_pinned():
    assert list(SUMMARY_FIELDS) == PINNED_SUMMARY


def _contract_section() -> str:
    text = CONTRACT_DOC.read_text()
    start = text.index("## Data contract")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


@pytest.mark.parametrize("table", [*TABLES, "manifest", "summary"])
def test_the_docs_document_every_column(table):
    rows = [line for line in _contract_section().splitlines() if line.startswith(f"| `{table}")]
    assert rows, f"docs/outputs.md's data contract has no row for {table}"
    documented = set(re.findall(r"`([a-z_]+)`", rows[0])) - {table}
    columns = PINNED_SUMMARY if table == "summary" else [f.name for f in _schemas()[table]]
    assert set(columns) <= documented, sorted(set(columns) - documented)
