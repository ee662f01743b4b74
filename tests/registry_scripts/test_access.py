"""MLflow access shared by every command, against a real (SQLite) registry: quoting and resolving."""

from __future__ import annotations

import uuid

import pytest
from mlflow.tracking import MlflowClient

from registry_scripts import access
from registry_scripts.registry import versions


def _model(client: MlflowClient, name: str, count: int) -> str:
    client.create_registered_model(name)
    for _ in range(count):
        client.create_model_version(name, source="/nowhere/model", run_id=None)
    return name


def test_quoted_takes_either_quote_mark_and_refuses_both() -> None:
    assert access.quoted("attrition") == "'attrition'"
    assert access.quoted("o'brien") == '"o\'brien"'
    with pytest.raises(access.LookupFailed, match="both quote marks"):
        access.quoted("""o'brien "the" model""")


def test_a_name_with_a_quote_is_found_and_resolved(client: MlflowClient) -> None:
    name = _model(client, f"o'brien-{uuid.uuid4().hex[:6]}", 3)
    assert access.all_versions(client, name) == [1, 2, 3]
    assert [version.number for version in versions(client, name)] == [1, 2, 3]  # Found nothing before.
    client.set_registered_model_alias(name, "production", "2")
    client.transition_model_version_stage(name, "1", "Staging")
    assert access.resolve(client, name) == 2
    assert access.resolve(client, name, stage="Staging") == 1
    assert access.resolve(client, name, version=3) == 3
    with pytest.raises(access.LookupFailed, match=r"no version of model .* is in stage Production"):
        access.resolve(client, name, stage="Production")


def test_newest_without_alias_only_when_asked(client: MlflowClient) -> None:
    name = _model(client, f"plain-{uuid.uuid4().hex[:6]}", 2)
    assert access.resolve(client, name, newest_without_alias=True) == 2
    with pytest.raises(access.LookupFailed, match="alias production"):
        access.resolve(client, name)
    with pytest.raises(access.LookupFailed, match="no registered model"):
        access.resolve(client, f"nobody-{uuid.uuid4().hex[:6]}", newest_without_alias=True)
    assert access.model_uri(name) == f"models:/{name}@production"
    assert access.model_uri(name, stage="Staging") == f"models:/{name}/Staging"


def test_version_record_names_the_version_it_cannot_read(client: MlflowClient) -> None:
    name = _model(client, f"no-artifacts-{uuid.uuid4().hex[:6]}", 1)
    with pytest.raises(access.LookupFailed, match=f"model '{name}' version 1: "):
        access.version_record(client, name, 1)  # Registered, but nothing was logged at its source.
    with pytest.raises(access.LookupFailed, match=f"model '{name}' version 9: "):
        access.version_record(client, name, 9)
