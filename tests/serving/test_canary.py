"""The canary: the same people go to `@canary` at every share, the rest to production, both logged."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine

from registry_scripts.rollout import SHARE_TAG
from serving.proxy.backend import Backend
from serving.proxy.canary import assigned, parse_share
from serving.proxy.runtime import Runtime
from tests.conftest import register_again
from tests.serving.conftest import (
    HEADERS,
    FakeBackend,
    Proxy,
    count,
    drive,
    fake_process,
    fake_server,
    logged_request,
    model_info,
    routed_runtime,
    rows,
    split_body,
    wait_for,
)
from training.job import TrainingOutcome

PEOPLE = [str(n) for n in range(4000)]


def canaried(share: float, *, version: int = 8) -> set[str]:
    """The people the canary of model `m`, version `version`, takes at `share` percent."""
    return {key for key in PEOPLE if assigned(key, model="m", version=version, share=share)}


def test_a_larger_share_keeps_everyone_a_smaller_one_had() -> None:
    steps = [canaried(share) for share in (0, 10, 50, 100)]
    assert steps[0] == set() and steps[-1] == set(PEOPLE)
    assert steps[0] <= steps[1] <= steps[2] <= steps[3]
    assert abs(len(steps[1]) / len(PEOPLE) - 0.10) < 0.02 and abs(len(steps[2]) / len(PEOPLE) - 0.50) < 0.03


def test_each_rollout_draws_its_own_people() -> None:
    assert canaried(10, version=8) != canaried(10, version=9)


@pytest.mark.parametrize(("text", "share"), [(None, 0.0), ("", 0.0), ("10", 10.0), ("50.5", 50.5)])
def test_the_share_tag_is_a_percentage(text: str | None, share: float) -> None:
    assert parse_share(text) == share


@pytest.mark.parametrize("text", ["-1", "101", "half"])
def test_a_share_that_is_no_percentage_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"rollout\.share|could not convert"):
        parse_share(text)


@pytest.fixture
def canary_backend() -> Iterator[FakeBackend]:
    """A second fake model server for the canary; its threshold (0.9) tells its answers apart."""
    with fake_server(threshold=0.9) as server:
        yield server


def with_canary(runtime: Runtime, server: FakeBackend, share: float) -> None:
    """Route the runtime's canary (version 8) to a fake server at `share` percent; start its mirror."""
    info = dataclasses.replace(model_info(), version=8, target="@canary", aliases=["canary"])
    runtime.canary.supervisor.backend = Backend(info=info, url=server.url, process=fake_process())
    runtime.canary.share = share
    runtime.canary.mirror.start_workers()


def one(*people: int) -> dict[str, object]:
    """A request about these people, a row each."""
    return {"dataframe_records": [{"employee_id": person, "Age": 30, "OverTime": "No"} for person in people]}


def test_people_meet_one_version_and_the_log_and_mirror_say_which(
    tmp_path: Path, fake_backend: FakeBackend, canary_backend: FakeBackend
) -> None:
    with routed_runtime(tmp_path, fake_backend) as runtime:

        async def scenario(client: httpx.AsyncClient) -> dict[int, list[tuple[str, str]]]:
            with_canary(runtime, canary_backend, 50)
            seen: dict[int, list[tuple[str, str]]] = {}
            for _ in range(2):
                for person in range(40):
                    answer = await client.post("/invocations", json=one(person))
                    assert answer.status_code == 200
                    seen.setdefault(person, []).append(
                        (answer.headers["X-Model-Version"], answer.headers["X-Request-ID"])
                    )
            mixed = await client.post("/invocations", json=one(*range(40)))
            assert mixed.headers["X-Model-Version"] == "7"  # Never split: production answers a mixed request.
            await runtime.canary.mirror.queue.join()
            return seen

        seen = drive(runtime, scenario)
    chosen = {int(key) for key in PEOPLE[:40] if assigned(key, model="m", version=8, share=50)}
    assert 5 < len(chosen) < 35
    for person, answers in seen.items():
        assert {version for version, _ in answers} == {"8" if person in chosen else "7"}
    canary_request = logged_request(runtime, seen[min(chosen)][0][1])
    assert canary_request["model_version"] == 8 and canary_request["model_target"] == "@canary"
    assert canary_request["predictions"][0]["threshold"] == 0.9
    # Each canary answer was scored again by production, off the request path, as a shadow row.
    engine = runtime.engine
    mirrored = count(
        engine, "SELECT count(*) FROM shadow_predictions WHERE model_version = 7 AND error IS NULL"
    )
    assert mirrored == 2 * len(chosen)
    assert runtime.metrics.canary_requests.labels("canary")._value.get() == 2 * len(chosen)


def test_no_canary_without_a_share_or_a_backend(
    tmp_path: Path, fake_backend: FakeBackend, canary_backend: FakeBackend
) -> None:
    with routed_runtime(tmp_path, fake_backend) as runtime:

        async def scenario(client: httpx.AsyncClient) -> set[str]:
            with_canary(runtime, canary_backend, 0)
            versions = {
                (await client.post("/invocations", json=one(p))).headers["X-Model-Version"] for p in range(20)
            }
            runtime.canary.share, runtime.canary.supervisor.backend = 100, None
            versions |= {
                (await client.post("/invocations", json=one(p))).headers["X-Model-Version"] for p in range(20)
            }
            return versions

        assert drive(runtime, scenario) == {"7"}
    assert canary_backend.bodies == []


@pytest.mark.integration
def test_a_real_proxy_follows_the_canary_and_its_share_and_resumes_after_a_restart(
    client: MlflowClient,
    served: str,
    attrition: TrainingOutcome,
    log_db: str,
    start_proxy: Callable[..., Proxy],
) -> None:
    canary = register_again(client, attrition, served)
    proxy = start_proxy(served, log_db)
    people = list(range(1, 61))
    data = rows(60).assign(employee_id=people)

    def versions(target: Proxy) -> dict[int, str]:
        with httpx.Client(base_url=target.url, headers=HEADERS, timeout=60) as http:
            return {
                person: http.post("/invocations", json=split_body(data.iloc[[i]])).headers["X-Model-Version"]
                for i, person in enumerate(people)
            }

    assert set(versions(proxy).values()) == {"1"}
    client.set_registered_model_alias(served, "canary", canary)
    client.set_registered_model_tag(served, SHARE_TAG, "50")
    wait_for((proxy.spool / "canary.json").exists, 180, "the canary's backend")
    wait_for(lambda: json.loads((proxy.spool / "canary.json").read_text())["version"] == int(canary), 60)
    expected = {
        p: canary if assigned(str(p), model=served, version=int(canary), share=50) else "1" for p in people
    }
    wait_for(lambda: versions(proxy) == expected, 30, "half the people on the canary")
    assert 5 < sum(v == canary for v in expected.values()) < 55
    proxy.stop()
    again = start_proxy(served, log_db)
    wait_for((again.spool / "canary.json").exists, 180, "the restarted proxy's canary")
    wait_for(lambda: versions(again) == expected, 60, "the same people on the canary after a restart")
    client.set_registered_model_tag(served, SHARE_TAG, "100")
    wait_for(lambda: set(versions(again).values()) == {canary}, 30, "everyone on the canary")
    client.delete_registered_model_alias(served, "canary")
    client.delete_registered_model_tag(served, SHARE_TAG)
    wait_for(lambda: set(versions(again).values()) == {"1"}, 30, "everyone back on production")
    engine = create_engine(log_db)
    try:
        on_canary = f"SELECT count(*) FROM inference_requests WHERE model_version = {canary}"
        assert count(engine, f"{on_canary} AND model_target = '@canary'") == count(engine, on_canary) > 0
        mirrored = "SELECT count(*) FROM shadow_predictions WHERE model_version = 1 AND error IS NULL"
        wait_for(lambda: count(engine, mirrored) > 0, 30, "production's mirror rows")
    finally:
        engine.dispose()
    metrics = httpx.get(f"{again.url}/metrics", timeout=10).text
    assert 'serving_canary_requests_total{arm="canary"}' in metrics
