"""The served version's model card as training wrote it, with the promotion history the registry holds now."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from typing import Literal

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry_scripts.registry import history_of, own_tags
from serving.errors import NotFound, Unavailable

CARD_DIR = "model_card"  # Where training logs the card in its run (every version of that run shares it).


def card(client: MlflowClient, *, name: str, version: int, run_id: str, kind: Literal["html", "md"]) -> str:
    """The card of `name` version `version` (trained in `run_id`), its promotion history appended."""
    try:
        listed = [item.path for item in client.list_artifacts(run_id, CARD_DIR)]
        if f"{CARD_DIR}/model_card.{kind}" not in listed:
            raise NotFound(f"{name} version {version} has no model card (its run predates model cards)")
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"{CARD_DIR}/model_card.{kind}", dst_path=tmp
            )
            text = Path(path).read_text(encoding="utf-8")
        history = history_of(own_tags(client.get_model_version(name, str(version))))
    except MlflowException as exc:
        raise Unavailable(f"cannot read the model card: {exc.message}") from exc
    rows = [(str(e.get("at", "")), str(e.get("action", "")), str(e.get("by", "")), str(e.get("reason", "")))
            for e in history]  # fmt: skip
    if kind == "md":
        lines = ["", "## Promotion history", ""]
        if rows:
            lines += [
                "| at | action | by | reason |",
                "|---|---|---|---|",
                *(f"| {' | '.join(r)} |" for r in rows),
            ]
        else:
            lines.append("Not promoted yet.")
        return text + "\n".join(lines) + "\n"
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    table = (
        f"<table><tr><th>at</th><th>action</th><th>by</th><th>reason</th></tr>{cells}</table>"
        if rows
        else "<p>Not promoted yet.</p>"
    )
    return f"{text}<h2>Promotion history</h2>{table}"
