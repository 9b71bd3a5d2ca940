"""Checks cluster/ holds no secret: a scanner over every config file (and the scanner's own tests),
no Kubernetes Secret, no AWS key in a container."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.cluster_configs import CONFIG_FILES, all_documents, containers, env_of, rel


SECRET_PATTERNS = {
    "an AWS secret key setting": r"(?i)aws_secret_access_key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{8,}",
    "an AWS access key id": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "a 40-character secret": r"(?i)secret\w*[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
    "a literal Ray token": r"\bRAY_AUTH_TOKEN\s*[:=]\s*[\"']?[A-Za-z0-9_\-.]{8,}",
    "a Ray token in a Dockerfile ENV": r"(?m)^\s*ENV\s+RAY_AUTH_TOKEN\b",
    "a literal Secret value": r"--from-literal=[\w.-]+=[\"']?[A-Za-z0-9_\-/+=]{8,}",
    "a private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "credentials in a URL": r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@",
}


def find_secrets(text: str) -> list[str]:
    return [what for what, pattern in SECRET_PATTERNS.items() if re.search(pattern, text)]


@pytest.mark.parametrize("path", CONFIG_FILES, ids=rel)
def test_no_config_file_under_cluster_holds_a_secret(path: Path):
    assert not find_secrets(path.read_text()), f"{rel(path)} seems to hold {find_secrets(path.read_text())}"


@pytest.mark.parametrize("leak", [
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "- name: AWS_ACCESS_KEY_ID\n  value: AKIAIOSFODNN7EXAMPLE",
    "secretKey: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "export RAY_AUTH_TOKEN=3f2c9a7e1b5d4c8f9a0e",
    "RAY_AUTH_TOKEN: '3f2c9a7e1b5d4c8f9a0e'",
    "ENV RAY_AUTH_TOKEN=x",
    "kubectl create secret generic t --from-literal=auth_token=3f2c9a7e1b5d4c8f",
    "-----BEGIN RSA PRIVATE KEY-----",
    "endpoint: http://admin:hunter22@s3.local:8333",
])
def test_the_secret_scanner_catches_leaks(leak: str):
    assert find_secrets(leak)


@pytest.mark.parametrize("clean", [
    "- name: RAY_AUTH_TOKEN\n  valueFrom:\n    secretKeyRef: {name: mediajobs-ray-token, key: auth_token}",
    "authOptions: {mode: token, secretName: mediajobs-ray-token}",
    "RAY_AUTH_TOKEN_PATH=/home/mediajobs/.ray/auth_token",
    'export RAY_AUTH_TOKEN="$(cat ~/.ray/auth_token)"',
    "kubectl create secret generic mediajobs-ray-token --from-file=auth_token=$HOME/.ray/auth_token",
    "IamInstanceProfile: {Arn: arn:aws:iam::123456789012:instance-profile/mediajobs-s3}",
    "--address http://mediajobs-head-svc:8265",
])
def test_the_secret_scanner_passes_references_to_secrets(clean: str):
    assert not find_secrets(clean)


def test_no_kubernetes_secret_or_aws_key_is_committed():
    assert not [str(doc) for doc in all_documents() if doc.kind == "Secret"], "Secrets are created out of band"
    for where, _, container in containers():
        keys = set(env_of(container)) & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
        assert not keys, f"{where}: {sorted(keys)}; S3 access comes from IRSA"
