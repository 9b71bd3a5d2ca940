"""The docs cannot drift: the spec reference is the models rendered, every spec field is in it,
and the README stays a short guide whose links into docs/ resolve. No Ray, no storage."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from jobs.spec.load import Spec
from jobs.spec.reference import REGENERATE, render_reference

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
REFERENCE = DOCS / "spec-reference.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_spec_reference_is_generated_from_the_models():
    assert REFERENCE.read_text() == render_reference(), (
        f"docs/spec-reference.md is out of date with jobs/spec/; regenerate it from the repo root: {REGENERATE}")


def _sections(annotation) -> list[type[BaseModel]]:
    """The models a field holds, through Optional, unions and lists (walked without the generator)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, types.UnionType, list):
        return [model for arg in get_args(annotation) for model in _sections(arg)]
    return []


def _field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        paths.append(prefix + name)
        inner = "[]." if get_origin(field.annotation) is list else "."
        for section in _sections(field.annotation):
            paths += _field_paths(section, prefix + name + inner)
    return paths


def _kind_sections(text: str) -> dict[str, str]:
    """The reference's text per top-level model, keyed by the model's class name."""
    parts = re.split(r"^## ", text, flags=re.M)
    found = {}
    for part in parts:
        named = re.search(r"^`(\w+Spec)`", part.split("\n", 2)[-1].lstrip(), flags=re.M)
        if part.startswith("kind: ") and named:
            found[named.group(1)] = part
    return found


@pytest.mark.parametrize("model", get_args(Spec), ids=lambda m: m.__name__)
def test_every_spec_field_is_in_the_reference(model):
    section = _kind_sections(REFERENCE.read_text()).get(model.__name__)
    assert section, f"docs/spec-reference.md has no section for {model.__name__}"
    paths = _field_paths(model)
    assert len(paths) > len(model.model_fields)  # sections were walked into, not just the top level
    missing = [path for path in paths if f"| `{path}` |" not in section]
    assert not missing, f"{model.__name__}: not in docs/spec-reference.md: {missing}"


def test_readme_is_a_short_guide():
    lines = README.read_text().splitlines()
    assert len(lines) < 300, f"README.md has {len(lines)} lines; move reference material into docs/"


def test_readme_keeps_the_two_setup_commands():
    # cluster/dev.sh and .ci/run are "the README's" commands; they must stay in it verbatim.
    text = README.read_text()
    assert "bash cluster/dev.sh demo" in text
    assert "bash cluster/dev.sh test" in text


def _anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def _local_links(path: Path) -> list[str]:
    return [link for link in LINK.findall(path.read_text()) if not re.match(r"[a-z]+:", link)]


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_local_links_resolve(page):
    links = _local_links(page)
    if page == README:
        assert any(link.startswith("docs/") for link in links), "README.md links nowhere into docs/"
    broken = []
    for link in links:
        target, _, anchor = link.partition("#")
        file = (page.parent / target).resolve() if target else page
        if not file.exists():
            broken.append(link)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(link)
    assert not broken, f"{page.name}: links to missing files or headings: {broken}"
