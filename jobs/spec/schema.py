"""The job spec's JSON Schema, derived from the spec models (so it cannot drift from them).

For editors: `mediajobs schema > mediajobs-spec.json`, then a spec file that starts with
`# yaml-language-server: $schema=./mediajobs-spec.json` gets completion and checks in any
editor with a YAML language server. The schema checks shapes and names; `mediajobs validate`
also checks what a schema cannot say (URIs, a task's architectures and their settings).
"""

from __future__ import annotations

from typing import Any

from jobs.spec.load import Spec

__all__ = ["spec_json_schema"]


def spec_json_schema() -> dict[str, Any]:
    from pydantic import TypeAdapter

    schema = TypeAdapter(Spec).json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "mediajobs job spec",
            "description": "A job spec of mediajobs: kind train, score, generate or stylize "
                           "(docs/spec-reference.md).", **schema}
