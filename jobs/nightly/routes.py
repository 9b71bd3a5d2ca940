"""The routes of an incremental score job, resolved: which objects (by extension) go to
which model, with each model's metadata checked against its route; and the run date."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from jobs.errors import MediaJobsError, UsageError
from tasks.protocols import Classifier


def media_of_task(task_name: str) -> str:
    """The media a classifier task scores (its definition's modality), "" for none."""
    from tasks.registry import definition

    return definition(task_name).modality or ""


@dataclass
class ResolvedRoute:
    """A route, resolved: its model version (`model_uri` names exactly it) and the task object
    that decodes for it."""

    name: str
    media: str
    task_name: str
    model_uri: str
    model_id: str
    class_names: list[str]
    extensions: tuple[str, ...]
    task: Classifier = field(repr=False)

    @property
    def positions(self) -> tuple[str, ...]:
        """The columns that place an example in its object (a frame's index and time, a
        window's start and end); none for images."""
        return tuple(getattr(self.task, "position_columns", ()))

    @property
    def detail_table(self) -> str | None:
        """The nightly table of per-example rows of multi-example media (a video's frames, an
        audio file's windows), as the task's definition names it; none for one-example media."""
        from tasks.registry import definition

        return definition(self.task_name).example_table


def resolve_routes(spec) -> list[ResolvedRoute]:
    """The spec's routes (a single-task spec is one route), with their models checked."""
    from jobs.models.store import prepare_model
    from jobs.models.task_config import task_config_from_metadata
    from tasks import get_task

    routes = getattr(spec, "routes", None)
    wanted = ([(r.route_name, r.media, r.task, r.model, r.extensions, r) for r in routes] if routes else
              [(media_of_task(spec.task), media_of_task(spec.task), spec.task, spec.model, None, spec)])
    plans = []
    for i, (name, media, task_name, model, extensions, section) in enumerate(wanted):
        where = f"routes[{i}].model" if routes else "model"
        try:
            version = prepare_model(model, getattr(spec, "trust_model_code", False))
        except MediaJobsError as exc:  # it says "model: ..."; name the route's field
            raise type(exc)(where + exc.message.removeprefix("model")) from None
        metadata = version.metadata
        if metadata.task != task_name:
            raise MediaJobsError(f"{where}: the model at {model} was trained for task {metadata.task!r}, "
                                 f"not {task_name!r} (media: {media})")
        task = get_task(task_name)(**task_config_from_metadata(metadata, section))
        # The version resolved now is the one every actor of the run loads (and checks).
        plans.append(ResolvedRoute(name, media, task_name, version.uri, version.model_id, metadata.class_names,
                               tuple(e.lower() for e in (extensions or task.suffixes)), task))
    return plans


def route_for(uri: str, routes: list[ResolvedRoute]) -> ResolvedRoute | None:
    name = uri.rsplit("/", 1)[-1].lower()
    return next((r for r in routes if name.endswith(r.extensions)), None)


def check_run_date(text: str | None) -> str:
    """The run date as YYYY-MM-DD (default today, UTC). Raises UsageError for a bad one."""
    if text is None:
        return dt.datetime.now(dt.timezone.utc).date().isoformat()
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise UsageError(f"--run-date: {text!r} is not a date; use YYYY-MM-DD, e.g. 2026-11-21") from None
