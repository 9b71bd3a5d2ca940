"""Which kinds of location a job spec may name: the URI schemes this installation allows.

`MEDIAJOBS_URI_SCHEMES` lists them, comma-separated, out of:
  s3     object storage (any S3-compatible endpoint the credentials reach);
  file   paths on the machine the job runs on (a local path is a file URI);
  https  TF Hub / Kaggle handles, for a stylize job's `model` only.
Unset means all three. A cluster operator sets, say, `MEDIAJOBS_URI_SCHEMES=s3` in the
cluster's environment: a submitted job validates its spec again where it runs, so a
spec cannot then read or write the nodes' own disks (a model file from `/tmp`, an
output over `/etc`) nor fetch code-carrying modules from the internet. Unknown names
in the list are ignored, which can only allow less.
"""

from __future__ import annotations

import os

from jobs.storage.objects import parse_uri

URI_SCHEMES_VARIABLE = "MEDIAJOBS_URI_SCHEMES"
KNOWN_SCHEMES = ("s3", "file", "https")


def allowed_schemes() -> tuple[str, ...]:
    listed = os.environ.get(URI_SCHEMES_VARIABLE)
    if listed is None:
        return KNOWN_SCHEMES
    wanted = {name.strip().lower() for name in listed.split(",")}
    return tuple(name for name in KNOWN_SCHEMES if name in wanted)


def scheme_of(uri: str) -> str:
    """"https" for a web handle, else the storage scheme (a local path is "file")."""
    if uri.startswith(("https://", "http://")):
        return "https"
    return parse_uri(uri).scheme


def scheme_problem(uri: str) -> str | None:
    """Why `uri` may not be used here, or None when its scheme is allowed."""
    scheme, allowed = scheme_of(uri), allowed_schemes()
    if scheme in allowed:
        return None
    what = {"file": "a local path", "s3": "an s3:// URI", "https": "a web handle"}[scheme]
    use = " or ".join({"file": "a local path", "s3": "s3://bucket/prefix/", "https": "a TF Hub handle"}[s]
                      for s in allowed) or "nothing: no scheme is allowed"
    return (f"is {what}, which this installation does not allow "
            f"({URI_SCHEMES_VARIABLE}={os.environ.get(URI_SCHEMES_VARIABLE, '')!r}); use {use}")
