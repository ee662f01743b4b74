"""One decision's record: what was decided, by which version, from which input, and why; JSON or printable."""

from __future__ import annotations

import base64
import html
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry_scripts.registry import GATES_TAG, history_of, own_tags
from serving.errors import NotFound, Unavailable

PROMOTED = "promoted to Production"  # The audit entry of a promotion, with its gate results.


def version_facts(client: MlflowClient, name: str, version: int) -> dict[str, Any]:
    """The registry's facts of the version that decided: run, data, code, and its promotion's gates."""
    try:
        found = client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFound(f"model {name!r} version {version} is no longer in the registry") from exc
        raise Unavailable(f"the model registry cannot answer: {exc.message}") from exc
    tags = own_tags(found)  # A copy's own gates and audit, not its source's.
    lineage = {"dataset_sha256": tags.get("dataset_sha256"), "git_commit": tags.get("git_commit")}
    if found.run_id:  # The training run holds them even when the version was registered by hand.
        try:
            run = client.get_run(found.run_id).data
        except MlflowException as exc:
            raise Unavailable(f"the tracking server cannot answer: {exc.message}") from exc
        lineage = {
            "dataset_sha256": run.params.get("dataset_sha256") or lineage["dataset_sha256"],
            "git_commit": run.tags.get("git_commit") or lineage["git_commit"],
        }
    promotions = [entry for entry in history_of(tags) if entry.get("action") == PROMOTED]
    promotion = promotions[-1] if promotions else None
    return {
        "run_id": found.run_id,
        "source": found.source,
        **lineage,
        "promotion": None
        if promotion is None
        else {key: promotion.get(key) for key in ("at", "by", "reason", "gates")},
        "gates_verdict": tags.get(GATES_TAG),
    }


def build(request: dict[str, Any], item: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """The record of one logged row (`item`) of a request (`store.get_request`), with its version's facts."""
    return {
        "request_id": str(request["request_id"]),
        "row": item["row_index"],
        "decided_at": request["received_at"].isoformat(),
        "model": {"name": request["model_name"], "version": request["model_version"], **facts},
        "entity_id": item["entity_id"],  # Pseudonymised when the proxy runs with ENTITY_ID_HMAC_KEY.
        "input": item["input"],
        "score": item["score"],
        "threshold": item["threshold"],
        "decision": item["prediction"],
        "base_value": item["base_value"],
        "contributions": item["contributions"],
        "reasons": item.get("reasons"),
    }


def render(record: dict[str, Any], waterfall: bytes | None) -> str:
    """One printable page: the decision, its reasons, the waterfall, the input and where it came from."""
    model, escape = record["model"], html.escape
    reasons = record["reasons"]
    if reasons is None:
        why = "<p>The request asked for no reason codes (params.reasons); the waterfall shows them all.</p>"
    elif not reasons:
        why = "<p>No feature raised the risk above the average.</p>"
    else:
        items = (
            f"<li><b>{escape(r['code'])}</b>: {escape(r['statement'])} "
            f"({escape(r['feature'])} = {escape(str(r['value']))}; {r['contribution']:+.3f} log-odds)</li>"
            for r in reasons
        )
        why = f"<ol>{''.join(items)}</ol>"
    plot = (
        f'<img alt="SHAP waterfall" src="data:image/png;base64,{base64.b64encode(waterfall).decode()}">'
        if waterfall
        else "<p>Scored without explanations.</p>"
    )
    inputs = "".join(
        f"<tr><td>{escape(str(name))}</td><td>{escape(str(value))}</td></tr>"
        for name, value in (record["input"] or {}).items()
    )
    promotion = model.get("promotion") or {}
    gates = "".join(
        f"<li>{escape(str(g.get('gate')))}: {'passed' if g.get('passed') else 'refused'}; "
        f"{escape(str(g.get('detail')))}</li>"
        for g in promotion.get("gates") or []
    )
    promoted = (
        f"{promotion.get('at')} by {promotion.get('by')}: {promotion.get('reason')}"
        if promotion
        else "no promotion recorded (served by hand or before the audit trail)"
    )
    lineage = [
        ("model", f"{model['name']} version {model['version']}"),
        ("training run", model.get("run_id")),
        ("dataset SHA-256", model.get("dataset_sha256")),
        ("code (git commit)", model.get("git_commit")),
        ("promoted to Production", promoted),
    ]
    facts = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in lineage)
    return (
        "<!doctype html><meta charset=utf-8><title>Decision record</title><style>"
        "body{font-family:sans-serif;max-width:52em;margin:1em auto}"
        "td{padding:.15em .8em;border-bottom:1px solid #ddd}"
        "img{max-width:100%}</style>"
        f"<h1>Decision record</h1><p>Request {escape(record['request_id'])}, row {record['row']}, decided at "
        f"{escape(record['decided_at'])}; entity {escape(str(record['entity_id']))}.</p>"
        f"<h2>Decision: {escape(str(record['decision']))}</h2><p>Score {record['score']:.4f} against the "
        f"threshold {record['threshold']:.4f}; base value {record['base_value']} log-odds.</p>"
        f"<h2>Principal reasons</h2>{why}<h2>Every feature's contribution</h2>{plot}"
        f"<h2>The input as sent</h2><table>{inputs}</table>"
        f"<h2>Which model, and how it got there</h2><table>{facts}</table>"
        + (f"<h3>Gates of its promotion</h3><ul>{gates}</ul>" if gates else "")
    )
