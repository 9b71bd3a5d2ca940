"""Where the S3 endpoint and credentials come from: the environment, AWS config, or the local stack.

Nothing here stores or prints a secret: `S3Settings.__repr__` hides the key, and the
settings are resolved afresh in every process (a Ray worker reads its own environment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cluster.localstate import DEFAULT_REGION, read_local_stack


@dataclass(frozen=True)
class S3Settings:
    """Resolved endpoint and credentials. `repr` hides the secret."""

    endpoint: str | None
    access_key: str | None
    secret_key: str | None
    region: str
    source: str  # "environment", "aws-config", "local-stack" or "none"

    def __repr__(self) -> str:
        return f"S3Settings(endpoint={self.endpoint!r}, region={self.region!r}, source={self.source!r})"


def resolve_s3_settings() -> S3Settings:
    """Find the S3 endpoint and credentials, in this order:

    1. `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and `AWS_ENDPOINT_URL`) in the environment;
    2. the standard AWS config chain (profiles, SSO, instance roles) through botocore;
    3. the embedded local stack, when it has been started under `MEDIAJOBS_HOME`.
    """
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return S3Settings(endpoint, os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                          region or DEFAULT_REGION, "environment")
    creds = _aws_config_credentials()
    if creds is not None:
        return S3Settings(endpoint, creds[0], creds[1], region or creds[2] or DEFAULT_REGION, "aws-config")
    stack = read_local_stack()
    if stack is not None and endpoint is None:
        return S3Settings(stack.s3_endpoint, stack.access_key, stack.secret_key, stack.region, "local-stack")
    return S3Settings(endpoint, None, None, region or DEFAULT_REGION, "none")


def _aws_config_credentials() -> tuple[str | None, str | None, str | None] | None:
    # Only consult botocore when a profile or config file could exist: it is slow to
    # import and probes the instance metadata service otherwise.
    has_config = any(os.environ.get(v) for v in (
        "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE"))
    has_config = has_config or (Path.home() / ".aws").exists()
    if not has_config:
        return None
    import botocore.session

    session = botocore.session.get_session()
    creds = session.get_credentials()
    if creds is None:
        return None
    region = session.get_config_variable("region")
    if creds.token or getattr(creds, "refresh_needed", None) is not None:
        # Temporary credentials (IRSA web identity, assumed roles, SSO, instance and
        # container roles) expire: frozen copies would fail mid-job, and boto3 given bare
        # keys drops the session token. No keys here lets boto3 and pyarrow use their own
        # refreshing credential chains.
        return None, None, region
    frozen = creds.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, region


def settings_fingerprint(settings: S3Settings) -> tuple:
    return (settings.endpoint, settings.access_key, settings.secret_key, settings.region)
