"""A team's deployment end to end: every command through `mlflow server`, replicas behind nginx, UI moves."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pandas as pd
import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, text

from chaos.scenarios import Traffic
from registry_scripts.rollout import SHARE_TAG
from tests.conftest import REPO
from tests.deployment.conftest import MODEL, Balanced, Team
from tests.serving.conftest import API_KEY, HEADERS, Proxy, rows, split_body, wait_for
from ui.client import Proxy as UiProxy
from ui.settings import UiSettings

BODY = split_body(rows(10))
FIGURES: dict[str, object] = {}  # What the closing note of the deployment issue quotes; printed at the end.


@pytest.fixture(scope="module")
def log_engine(team: Team) -> Iterator[Engine]:
    """An engine on the shared log database, for counting what the replicas stored."""
    engine = create_engine(team.log_db)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module", autouse=True)
def report_figures() -> Iterator[None]:
    """Print the measured figures once the module is done (`pytest -s` shows them)."""
    yield
    print("\ndeployment figures:", json.dumps(FIGURES, indent=2))


def traffic(balanced: Balanced) -> Traffic:
    """Four clients sending ten-row requests through the load balancer."""
    return Traffic(balanced.url, json.dumps(BODY).encode(), clients=4, headers=HEADERS)


def logged_once(engine: Engine, ids: list[str]) -> tuple[int, int]:
    """How many log rows these requests have, and how many distinct requests that is."""
    with engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT count(*), count(DISTINCT request_id) FROM inference_requests "
                "WHERE request_id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": ids},
        ).one()
    return int(found[0]), int(found[1])


def wait_logged(engine: Engine, ids: list[str], seconds: float = 60) -> None:
    """Until every request is in the log."""
    wait_for(lambda: logged_once(engine, ids)[1] == len(set(ids)), seconds, f"{len(ids)} requests in the log")


def served_version(replica: Proxy) -> int | None:
    """The version a replica serves now, asked directly (not through the balancer)."""
    try:
        return int(httpx.get(f"{replica.url}/model", headers=HEADERS, timeout=5).json()["version"])
    except (httpx.HTTPError, KeyError, ValueError):
        return None


def noticed(replica: Proxy, version: int, since_wall: float) -> float | None:
    """Seconds from `since_wall` until the replica's log says the registry names `version` (it then
    starts that version's backend, and answers with the old one until the new one is ready)."""
    pattern = re.compile(
        rf"^(\S+ \S+),(\d+) INFO serving.proxy.supervisor: follower: \S+ now names version {version}$"
    )
    times = [
        time.mktime(time.strptime(found[1], "%Y-%m-%d %H:%M:%S")) + int(found[2]) / 1000
        for line in replica.log().splitlines()
        if (found := pattern.match(line))
    ]
    later = [moment for moment in times if moment >= since_wall]
    return round(later[0] - since_wall, 1) if later else None


def follow(
    balanced: Balanced, version: int, since: float, seconds: float = 180
) -> dict[str, dict[str, float | None]]:
    """Per replica: seconds from `since` until it noticed `version` and until it served it."""
    since_wall = time.time() - (time.monotonic() - since)
    switched: dict[str, float] = {}
    deadline = time.monotonic() + seconds
    while len(switched) < len(balanced.replicas) and time.monotonic() < deadline:
        for address, replica in balanced.by_address().items():
            if address not in switched and served_version(replica) == version:
                switched[address] = round(time.monotonic() - since, 1)
        time.sleep(0.2)
    assert len(switched) == len(balanced.replicas), f"replicas switched to version {version}: {switched}"
    return {
        address: {"noticed": noticed(replica, version, since_wall), "serving": switched[address]}
        for address, replica in balanced.by_address().items()
    }


def ui_post(team: Team, path: str, body: dict[str, object]) -> None:
    """The REST call MLflow's web UI makes (its `ajax-api` prefix), as a person clicking it."""
    answer = httpx.post(f"{team.tracking_uri}/ajax-api/2.0/mlflow/{path}", json=body, timeout=30)
    assert answer.status_code == 200, answer.text


def test_every_command_runs_against_the_tracking_server(
    team: Team, trained: str, balanced: Balanced, log_engine: Engine
) -> None:
    client = team.client()
    version = client.get_model_version(MODEL, trained)
    assert version.current_stage == "Production" and version.aliases == ["production"]
    run = client.get_run(version.run_id or "")
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == MODEL and experiment.artifact_location.startswith("mlflow-artifacts:")
    assert list(team.artifacts.rglob("MLmodel")), "artifacts go through the server to its destination"
    assert not (team.workdir / "mlruns").exists() and not (team.workdir / "mlflow.db").exists()

    answers = [
        httpx.post(f"{balanced.url}/invocations", json=BODY, headers=HEADERS, timeout=60) for _ in range(30)
    ]
    assert {answer.status_code for answer in answers} == {200}
    spread = pd.Series([answer.headers["X-Served-By"] for answer in answers]).value_counts().to_dict()
    assert set(spread) == set(balanced.by_address()), spread  # Both replicas answered.
    ids = [answer.headers["X-Request-ID"] for answer in answers]
    wait_logged(log_engine, ids)
    assert logged_once(log_engine, ids) == (30, 30)
    with log_engine.connect() as connection:  # Two replicas migrated one fresh database at once.
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    FIGURES["spread_of_30_requests"] = spread

    ui = UiProxy(UiSettings(proxy_url=balanced.url, api_key=SecretStr(API_KEY)))
    assert ui.model()["version"] == int(trained)  # The business app talks to the balancer only.

    done = team.run("-m", "monitoring", "drift", "--model", MODEL, "--out", str(team.workdir / "reports"))
    assert done.returncode in {0, 1}, done.stderr[-3000:]
    summary = json.loads(next((team.workdir / "reports").glob("*/summary.json")).read_text())
    assert summary["rows"] == 300 and summary["version"] == int(trained)
    drift_runs = client.search_runs([experiment.experiment_id], "tags.monitoring = 'drift'")
    assert drift_runs and list(team.artifacts.rglob("summary.json"))

    scored = team.workdir / "scored"
    done = team.run(
        "-m", "serving.batch", "--model", MODEL, "--input", str(REPO / "data" / "attrition.csv"),
        "--output", str(scored), "--master", "local[1]",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(pd.read_parquet(scored)) == len(pd.read_csv(REPO / "data" / "attrition.csv"))


def test_a_promotion_is_followed_by_every_replica_without_a_failed_request(
    team: Team, trained: str, balanced: Balanced, log_engine: Engine
) -> None:
    client = team.client()
    first = client.get_model_version(MODEL, trained)
    second = client.create_model_version(
        MODEL,
        source=first.source or "",
        run_id=first.run_id,
        model_id=(first.source or "").rsplit("/", 1)[-1],
    ).version  # The same logged model (`models:/m-...`) registered again.
    with traffic(balanced) as sent:
        time.sleep(2)
        started = time.monotonic()
        done = team.run("-m", "registry_scripts", "promote", "--model", MODEL, "--version", str(second),
                        "--to", "production")  # fmt: skip
        command_seconds = round(time.monotonic() - started, 1)
        assert done.returncode == 0, done.stdout + done.stderr
        switched = follow(balanced, int(second), started)
        time.sleep(2)
    answered = sent.answered()
    assert answered and not sent.failures(), sent.failures()[:3]
    assert {r.served_by for r in sent.results} == set(balanced.by_address())
    wait_logged(log_engine, answered)
    assert logged_once(log_engine, answered) == (len(answered), len(answered))
    FIGURES["promotion"] = {
        "requests": len(sent.results), "failed": len(sent.failures()), "logged": len(answered),
        "promote_command_seconds": command_seconds, "poll_seconds": 1,
        "seconds_from_promote_start_per_replica": switched,
    }  # fmt: skip


def test_moves_made_in_mlflows_uis_are_followed_by_the_replicas_and_recorded(
    team: Team, trained: str, balanced: Balanced
) -> None:
    client = team.client()
    first, second = int(trained), int(client.get_model_version_by_alias(MODEL, "production").version)
    assert second != first

    moved = time.monotonic()
    ui_post(team, "registered-models/alias", {"name": MODEL, "alias": "production", "version": str(first)})
    FIGURES["ui_alias_move_seconds_to_switch"] = follow(balanced, first, moved)
    done = team.run("-m", "registry_scripts", "promote", "--model", MODEL, "--version", str(second),
                    "--to", "staging")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"warning: @production was moved by hand from version {second} to version {first}" in done.stdout
    production = client.get_model_version_by_alias(MODEL, "production")
    assert int(production.version) == first and production.current_stage == "Production"  # It survived.
    assert client.get_model_version(MODEL, str(second)).current_stage == "Staging"

    # The legacy dialog, its "archive existing versions" box left unchecked as it comes.
    ui_post(
        team,
        "model-versions/transition-stage",
        {"name": MODEL, "version": str(second), "stage": "Production", "archive_existing_versions": False},
    )
    synced = time.monotonic()
    done = team.run("-m", "registry_scripts", "sync", "--model", MODEL)
    assert done.returncode == 0, done.stderr
    assert f"stage Production was changed by hand from version {first} to version {second}" in done.stdout
    FIGURES["legacy_stage_move_seconds_from_sync_start"] = follow(balanced, second, synced)
    assert client.get_model_version(MODEL, str(first)).current_stage == "Archived"

    manual = [
        entry
        for number in (first, second)
        for entry in json.loads(client.get_model_version(MODEL, str(number)).tags["audit.history"])
        if entry.get("manual")
    ]
    assert {entry["recognised_by"] for entry in manual} == {"promote", "sync"}
    assert any("@production was moved by hand" in entry["action"] for entry in manual)
    assert any("stage Production was changed by hand" in entry["action"] for entry in manual)

    done = team.run("-m", "registry_scripts", "list", "--model", MODEL)
    assert done.returncode == 0 and "pending" not in done.stdout, done.stdout


def test_a_version_copied_to_another_model_in_mlflows_ui_is_judged_on_that_model(
    team: Team, trained: str
) -> None:
    client = team.client()
    source = client.get_model_version(MODEL, trained)
    target = f"{MODEL}-prod"
    # MLflow 3's "Promote model" button: a new version of another model, its source the version's URI,
    # every tag of the source copied (what `copy_model_version` sends too).
    ui_post(team, "registered-models/create", {"name": target})
    ui_post(team, "model-versions/create", {
        "name": target, "source": f"models:/{MODEL}/{trained}", "run_id": source.run_id,
        "tags": [{"key": key, "value": value} for key, value in source.tags.items()],
    })  # fmt: skip
    assert client.get_model_version(target, "1").tags["gates.production"] == "passed"  # As copied.
    done = team.run("-m", "registry_scripts", "list", "--model", target)
    row = next(line for line in done.stdout.splitlines() if line.startswith("1 "))
    assert done.returncode == 0 and f"{MODEL} v{trained}" in row and "passed" not in row, done.stdout
    done = team.run(
        "-m", "registry_scripts", "promote", "--model", target, "--version", "1", "--to", "production"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tags = client.get_model_version(target, "1").tags
    assert (tags["registry.model"], tags["gates.production"]) == (target, "passed")  # Its own, on its model.
    assert [entry["action"] for entry in json.loads(tags["audit.history"])] == ["promoted to Production"]
    assert client.get_model_version(target, "1").current_stage == "Production"


def retrain(team: Team, *, seed: int = 42, shuffled: bool = False) -> str:
    """The shipped attrition config with another seed, or on shuffled labels, trained as the module's was."""
    config = yaml.safe_load((REPO / "training" / "configs" / f"{MODEL}.yaml").read_text())
    config["search"]["seed"] = seed
    data = REPO / "data" / f"{MODEL}.csv"
    if shuffled:  # Noise: the same rows, their labels dealt out at random.
        frame = pd.read_csv(data)
        target = config["data"]["target"]
        frame[target] = frame[target].sample(frac=1.0, random_state=0).to_numpy()
        data = team.workdir / f"{MODEL}-shuffled.csv"
        frame.to_csv(data, index=False)
    config["data"]["path"] = str(data)
    path = team.workdir / f"{MODEL}-{'shuffled' if shuffled else f'seed-{seed}'}.yaml"
    path.write_text(yaml.safe_dump(config))
    done = team.run("-m", "training", "--config", str(path), "--trials", "2", "--cv-folds", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    version = re.search(rf"registered {MODEL} version (\d+)", done.stdout)
    assert version is not None, done.stdout
    return version[1]


PEOPLE = rows(240).assign(employee_id=range(1, 241))


@contextmanager
def people_traffic(balanced: Balanced, clients: int = 4) -> Iterator[list[tuple[float, int, str, str]]]:
    """One-person requests through nginx, each person's from one client in turn: (sent at, person,
    version, replica) of every answer; a failed request fails the test when the traffic stops."""
    answered: list[tuple[float, int, str, str]] = []
    stop = threading.Event()

    def send(offset: int) -> None:
        with httpx.Client(base_url=balanced.url, headers=HEADERS, timeout=60) as http:
            for i in itertools.count(offset, clients):
                if stop.is_set():
                    return
                row = PEOPLE.iloc[[i % len(PEOPLE)]]
                sent_at = time.monotonic()
                answer = http.post("/invocations", json=split_body(row))
                assert answer.status_code == 200, answer.text
                answered.append((sent_at, int(row["employee_id"].iloc[0]), answer.headers["X-Model-Version"],
                                 answer.headers["X-Served-By"]))  # fmt: skip

    with ThreadPoolExecutor(clients) as pool:
        running = [pool.submit(send, offset) for offset in range(clients)]
        try:
            yield answered
        finally:
            stop.set()
            for each in running:
                each.result()


def test_a_rollout_of_a_model_trained_on_noise_is_rolled_back_at_its_first_step_on_both_replicas(
    team: Team, trained: str, balanced: Balanced
) -> None:
    client = team.client()
    production = client.get_model_version_by_alias(MODEL, "production").version
    noise = retrain(team, shuffled=True)
    with people_traffic(balanced) as answered:
        done = team.run(
            "-m", "registry_scripts", "rollout", "--model", MODEL, "--version", noise,
            "--steps", "50,100", "--every", "2s", "--warmup", "60s", "--min-rows", "100",
        )  # fmt: skip
        rolled_back = time.monotonic()
        time.sleep(4)  # Longer than a poll: every replica is back on production.
    assert done.returncode == 1, done.stdout + done.stderr
    assert "step 1 FAILED: " in done.stdout and "flip rate" in done.stdout, done.stdout
    assert "rolled back" in done.stdout, done.stdout
    assert client.get_model_version_by_alias(MODEL, "production").version == production
    assert "canary" not in client.get_registered_model(MODEL).aliases
    canaried = {replica for _, _, version, replica in answered if version == noise}
    assert canaried == set(balanced.by_address())  # Both replicas sent people to it; after, neither did.
    assert {version for sent, _, version, _ in answered if sent > rolled_back + 2} == {production}
    entries = json.loads(client.get_model_version(MODEL, noise).tags["audit.history"])
    assert entries[-1]["action"] == "rolled back from the canary at 50%" and entries[-1]["live"]["flips"] > 0
    FIGURES["noise_rollout"] = {"requests": len(answered), "output": done.stdout.splitlines()}


def test_a_rollout_puts_each_person_on_one_version_on_both_replicas_and_reaches_production(
    team: Team, trained: str, balanced: Balanced
) -> None:
    client = team.client()
    production = client.get_model_version_by_alias(MODEL, "production")
    canary = retrain(team, seed=11)  # 8.1% of decisions flip at this budget (test_champion_challenger: why).
    stop = threading.Event()

    ready: dict[str, float] = {}  # When each replica's canary backend answered.
    shared: list[float] = []  # When the first share was written, once the warm-up was over.

    def watch() -> None:
        while not stop.is_set() and (len(ready) < len(balanced.replicas) or not shared):
            for address, replica in balanced.by_address().items():
                if address not in ready and (replica.spool / "canary.json").exists():
                    state = json.loads((replica.spool / "canary.json").read_text())
                    if state["version"] == int(canary):
                        ready[address] = time.monotonic()
            share = client.get_registered_model(MODEL).tags.get(SHARE_TAG, "0")
            if not shared and float(share) > 0:
                shared.append(time.monotonic())
            time.sleep(0.2)

    with ThreadPoolExecutor(1) as pool, people_traffic(balanced) as answered:
        watcher = pool.submit(watch)
        try:
            done = team.run(
                "-m", "registry_scripts", "rollout", "--model", MODEL, "--version", str(canary),
                "--steps", "50,100", "--every", "2s", "--warmup", "60s", "--min-rows", "100",
            )  # fmt: skip
            promoted = time.monotonic()
            assert done.returncode == 0, done.stdout + done.stderr
            time.sleep(2)
        finally:
            stop.set()
            watcher.result()
    assert "step 1 passed" in done.stdout and "step 2 passed" in done.stdout, done.stdout
    assert client.get_model_version_by_alias(MODEL, "production").version == canary
    assert "canary" not in client.get_registered_model(MODEL).aliases
    assert set(ready) == set(balanced.by_address())
    both = max(ready.values())
    assert shared and both < shared[0]  # The warm-up gave both replicas the time to start the canary.
    during = [entry for entry in sorted(answered) if entry[0] < promoted]
    # From the first request on, a person meets one version whichever replica answers, and never
    # production again after the canary.
    met: set[int] = set()
    for _, person, version, _ in during:
        assert not (person in met and version == production.version), f"person {person} went back"
        if version == canary:
            met.add(person)
    canaried = {replica for _, _, version, replica in during if version == canary}
    assert canaried == set(balanced.by_address()) and met
    FIGURES["rollout"] = {
        "requests": len(answered), "people_on_the_canary": len(met),
        "seconds_until_both_replicas_ran_the_canary": round(both - min(entry[0] for entry in answered), 1),
        "warmup_seconds": 60,
        "output": done.stdout.splitlines(),
    }  # fmt: skip


def test_a_replica_killed_under_traffic_loses_no_logged_row(
    team: Team, balanced: Balanced, log_engine: Engine
) -> None:
    victim, survivor = balanced.replicas
    survivor_address = f"127.0.0.1:{survivor.port}"
    with traffic(balanced) as sent:
        time.sleep(3)
        assert victim.process is not None
        victim.process.kill()  # SIGKILL: no drain, no flush; its spool is all that is left.
        victim.process.wait()
        killed = time.monotonic()  # Dead: its sockets are closed.
        time.sleep(5)
        victim.start()  # On the same port and spool directory.
        victim.wait_ready(240)
        restarted = time.monotonic()
        time.sleep(3)
    answered = sent.answered()
    after_kill = [r for r in sent.results if killed < r.sent_at < restarted]
    assert any(r.status == 200 and r.served_by == survivor_address for r in after_kill)
    failures = sent.failures()
    # Only requests the victim held when it died can fail; nginx sends later ones to the survivor.
    assert all(f.sent_at <= killed for f in failures), (killed, failures)
    wait_logged(log_engine, answered, seconds=120)
    assert logged_once(log_engine, answered) == (len(answered), len(answered))
    FIGURES["replica_killed"] = {
        "requests": len(sent.results), "failed_in_flight": len(failures), "answered": len(answered),
        "answered_while_down": sum(r.status == 200 for r in after_kill), "logged_exactly_once": len(answered),
        "seconds_to_restart": round(restarted - killed, 1),
    }  # fmt: skip
