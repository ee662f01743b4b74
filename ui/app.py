"""The Streamlit script: score an entity and see why, the log, drift and the challenger."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import pandas as pd
import streamlit as st

from ui.client import ApiError, Proxy
from ui.settings import UiSettings
from ui.words import asked_params, colour, entity_noun, explained, form_default, outcome_words

PAGES = ("Score", "History", "Drift", "Challenger", "Model card")


def _typed(value: Any, kind: str) -> Any:
    if kind in {"long", "integer"}:
        return int(value)
    if kind in {"double", "float"}:
        return float(value)
    return value


def _value_widget(name: str, facts: dict[str, Any], kind: str, *, key: str, value: Any = None) -> Any:
    """One feature's input: a number within the training range, or one of the training categories."""
    start = form_default(facts) if value is None else value
    if facts["kind"] == "categorical":
        options = list(facts["categories"])
        return st.selectbox(name, options, index=options.index(start) if start in options else 0, key=key)
    if kind in {"long", "integer"}:
        low, high = int(facts["min"]), int(facts["max"])
        return st.number_input(
            name, min_value=low, max_value=high, value=min(max(int(start), low), high), key=key
        )
    low_f, high_f = float(facts["min"]), float(facts["max"])
    return st.number_input(
        name, min_value=low_f, max_value=high_f, value=min(max(float(start), low_f), high_f), key=key
    )


def _show_result(proxy: Proxy, model: dict[str, Any]) -> None:
    result = st.session_state.get("result")
    if not result:
        return
    prediction, request_id, inputs = result["prediction"], result["request_id"], result["inputs"]
    score, threshold = float(prediction["score"]), float(prediction["threshold"])
    label = prediction["prediction"]
    st.markdown(
        f"<div style='border-left:8px solid {colour(score, threshold)};padding:.4em 1em'>"
        f"<b>{outcome_words(model)}</b>: probability <b>{score:.1%}</b>, decision <b>{label}</b> "
        f"(threshold {threshold:.1%})</div>",
        unsafe_allow_html=True,
    )
    columns = st.columns(3)
    columns[0].metric("Score", f"{score:.1%}")
    columns[1].metric("Decision", str(label))
    columns[2].metric("Threshold", f"{threshold:.1%}")
    if prediction.get("unseen_categories"):
        st.warning(f"Values the model never saw in training: {', '.join(prediction['unseen_categories'])}")
    st.subheader("Why")
    st.image(proxy.waterfall(request_id), caption=f"SHAP waterfall, request {request_id}")
    for sentence in explained(prediction, inputs):
        st.markdown(f"- {sentence}")
    _what_if(proxy, model, inputs, score)


def _what_if(proxy: Proxy, model: dict[str, Any], inputs: dict[str, Any], score: float) -> None:
    facts, kinds = model.get("features") or {}, _kinds(model)
    if not facts:
        return
    st.subheader("What if")
    name = st.selectbox("Change one feature", list(facts), key="what_if_feature")
    value = _value_widget(
        name, facts[name], kinds.get(name, "string"), key=f"what_if_{name}", value=inputs.get(name)
    )
    if st.button("Score the change", key="what_if_score"):
        changed = {k: v for k, v in inputs.items() if k in facts} | {
            name: _typed(value, kinds.get(name, "string"))
        }
        new, _ = proxy.score(changed)
        st.metric(
            "Score after the change",
            f"{float(new['score']):.1%}",
            delta=f"{float(new['score']) - score:+.1%}",
        )


def _kinds(model: dict[str, Any]) -> dict[str, str]:
    return {column["name"]: column["type"] for column in model.get("input_schema", []) if "name" in column}


def score_page(proxy: Proxy, model: dict[str, Any]) -> None:
    """Score one entity, by id or from a form, and explain it."""
    noun = entity_noun(model)
    article = "an" if noun[:1] in "aeiou" else "a"
    by_id, form = st.tabs([f"Find {article} {noun}", "Fill a form"])
    with by_id:
        entity_id = st.text_input(f"{noun.capitalize()} id", key="entity_id")
        if st.button("Score", key="score_id") and entity_id.strip():
            prediction, request_id = proxy.by_id(entity_id.strip(), asked_params(model))
            proxy.waterfall(request_id)  # Waits until the row is in the log, with its inputs.
            row = proxy.logged(request_id)["predictions"][0]
            st.session_state["result"] = {
                "prediction": prediction,
                "request_id": request_id,
                "inputs": row["input"],
            }
    with form:
        facts, kinds = model.get("features") or {}, _kinds(model)
        if not facts:
            st.info("This model version does not describe its features; use the id search.")
        else:
            values = {name: _value_widget(name, facts[name], kinds.get(name, "string"), key=f"form_{name}")
                      for name in facts}  # fmt: skip
            if st.button("Score the form", key="score_form"):
                row = {name: _typed(value, kinds.get(name, "string")) for name, value in values.items()}
                prediction, request_id = proxy.score(row, asked_params(model))
                st.session_state["result"] = {
                    "prediction": prediction,
                    "request_id": request_id,
                    "inputs": row,
                }
    _show_result(proxy, model)


def history_page(proxy: Proxy, model: dict[str, Any]) -> None:
    """The latest logged predictions, filtered, each opening its explanation."""
    labels = model.get("labels") or {}
    columns = st.columns(3)
    version = columns[0].number_input(
        "Model version (0 = all)", min_value=0, value=0, step=1, key="h_version"
    )
    label = columns[1].selectbox("Decision", ["all", *labels.values()], key="h_label")
    since = columns[2].date_input("Since", value=date(2000, 1, 1), key="h_since")
    rows = proxy.history(limit=500, model_version=int(version) or None)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
        frame = frame[frame["received_at"] >= datetime.combine(since, time(), tzinfo=UTC)]
        if label != "all":
            frame = frame[frame["prediction"] == label]
    if frame.empty:
        st.info("No logged predictions match.")
        return
    shown = frame[
        ["received_at", "model_version", "entity_id", "score", "prediction", "request_id", "row_index"]
    ]
    st.dataframe(shown, hide_index=True)
    choices = [f"{r.request_id} row {r.row_index}" for r in frame.itertuples()]
    picked = st.selectbox("Open an explanation", choices, key="h_pick")
    request_id, row = picked.split(" row ")
    item = frame[(frame["request_id"].astype(str) == request_id) & (frame["row_index"] == int(row))].iloc[0]
    st.image(proxy.waterfall(request_id, int(row)), caption=f"SHAP waterfall, request {request_id} row {row}")
    for sentence in explained(item.to_dict(), item["input"] or {}):
        st.markdown(f"- {sentence}")


def drift_page(proxy: Proxy, model: dict[str, Any]) -> None:
    """The latest drift summary, when one exists."""
    summary = proxy.drift()
    if summary is None:
        st.info("No drift report yet. Run `python -m monitoring drift --model ...` to make one.")
        return
    st.markdown(
        f"Report of {summary['created_at']} on version {summary['version']}: {summary['rows']} logged rows."
    )
    if summary["drift"]:
        st.error(f"Drift: {', '.join(summary['drifted'])}")
    else:
        st.success("No drift found.")
    features = pd.DataFrame(summary["features"])[
        ["feature", "kind", "psi", "p_adjusted", "unseen", "drifted"]
    ]
    st.dataframe(features.sort_values("psi", ascending=False), hide_index=True)


def rollout_section(rollout: dict[str, Any]) -> None:
    """The rollout in progress: who decides for whom, and each step's figures from the log."""
    share = (
        "no one yet (its backend is warming up on every replica)"
        if rollout["warming"]
        else f"{rollout['share']:g}% of the people scored"
    )
    st.warning(
        f"Rollout in progress: version {rollout['version']} decides for {share}, version "
        f"{rollout['production']} for the others. Step {rollout['step']} of {len(rollout['steps'])} "
        f"({', '.join(f'{step:g}%' for step in rollout['steps'])}), since {rollout['step_started_at']}."
    )
    steps = [*rollout["passed"], {"share": rollout["share"], **rollout["this_step"]}]
    st.dataframe(
        pd.DataFrame(
            {
                "share %": [step["share"] for step in steps],
                "status": ["passed"] * len(rollout["passed"]) + ["in progress"],
                "canary requests": [step["canary_requests"] for step in steps],
                "canary errors": [step["canary_errors"] for step in steps],
                "rows compared": [step["rows"] for step in steps],
                "flip rate": [step["flip_rate"] for step in steps],
                "to positive": [step["to_positive"] for step in steps],
                "to negative": [step["to_negative"] for step in steps],
                "p99 ms canary": [step["canary_p99_ms"] for step in steps],
                "p99 ms production": [step["production_p99_ms"] for step in steps],
                "labelled": [step.get("labelled", 0) for step in steps],
                "AUC canary": [step.get("canary_auc") for step in steps],
                "AUC production": [step.get("production_auc") for step in steps],
            }
        ),
        hide_index=True,
    )


def challenger_page(proxy: Proxy, model: dict[str, Any]) -> None:
    """A rollout in progress; the latest comparison of a challenger with the served version, and its flips."""
    if (rollout := proxy.rollout()) is not None:
        rollout_section(rollout)
    summary = proxy.challenger()
    if summary is None:
        st.info(
            "No challenger comparison yet. Serve with `--shadow staging`, then run "
            "`python -m monitoring compare --model ...`."
        )
        return
    st.markdown(
        f"Comparison of {summary['created_at']}: version {summary['challenger_version']} (challenger) "
        f"against version {summary['champion_version']} (served) on {summary['rows']} rows."
    )
    verdict, why = summary["verdict"], "; ".join(summary["reasons"])
    if verdict == "no objection":
        st.success("No objection to the challenger.")
    elif verdict == "objection":
        st.error(f"Objection: {why}")
    else:
        st.info(f"Not enough data: {why}")
    decisions = summary.get("decisions") or {}
    if decisions:
        columns = st.columns(3)
        columns[0].metric("Decisions that flip", f"{decisions['flip_rate']:.1%}")
        columns[1].metric("Flagged only by the challenger", decisions["flagged_only_by_challenger"])
        columns[2].metric("Flagged only by the served version", decisions["flagged_only_by_champion"])
    flipped = summary.get("flipped") or []
    if flipped:
        st.subheader("Rows whose decision flips")
        st.dataframe(
            pd.DataFrame(
                {
                    "request": [row["request_id"] for row in flipped],
                    "row": [row["row_index"] for row in flipped],
                    "served score": [row["score"] for row in flipped],
                    "challenger score": [row["shadow_score"] for row in flipped],
                    "served reasons": [", ".join(row["reasons"]) for row in flipped],
                    "challenger reasons": [", ".join(row["shadow_reasons"]) for row in flipped],
                }
            ),
            hide_index=True,
        )


def card_page(proxy: Proxy, model: dict[str, Any]) -> None:
    """The served version's model card: intended use, data, metrics, limits, promotion history."""
    st.markdown(proxy.card())


def main() -> None:
    """One run of the script."""
    st.set_page_config(page_title="Scores and reasons", layout="wide")
    proxy = Proxy(UiSettings())
    page = st.sidebar.radio("Page", PAGES, key="page")
    try:
        ready = proxy.ready()
        if ready.get("status") == "ready":
            st.sidebar.success(f"Service ready, model version {ready.get('model_version')}")
        else:
            st.sidebar.error("Service not ready: " + "; ".join(ready.get("reasons", [])))
        model = proxy.model()
        st.title(f"{model['name']}: {outcome_words(model)}")
        pages = {
            "Score": score_page,
            "History": history_page,
            "Drift": drift_page,
            "Challenger": challenger_page,
            "Model card": card_page,
        }
        pages[page](proxy, model)
    except ApiError as exc:
        st.error(exc.message)


if __name__ == "__main__":  # Streamlit runs the script as __main__.
    main()
