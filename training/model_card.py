"""The model card of one version: what the training run knows, as Markdown and as one offline HTML page."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from registry_scripts.fairness import figure
from training.protected import describe as describe_proxies

Rows = list[tuple[str, str]]


@dataclass(frozen=True)
class Section:
    """One heading with label/value rows, or with paragraphs."""

    title: str
    rows: Rows
    paragraphs: tuple[str, ...] = ()


def _f(value: float) -> str:
    return f"{value:.4f}"


def _per_group(summary: dict[str, Any] | None) -> Section:
    """The holdout's figures by protected group, as training's assessment found them."""
    title = "Per-group metrics"
    if summary is None:
        return Section(title, [], ("Not assessed: the config names no protected attributes (`fairness:`).",))
    policy = summary["policy"]
    chosen = "flagged" if policy["selected"] == "positive" else "not flagged"
    rows: Rows = []
    for item in summary["attributes"]:
        ratio, odds = item["demographic_parity_ratio"], item["equalized_odds_difference"]
        rows.append(
            (
                item["attribute"],
                f"demographic-parity ratio {figure(ratio)}"
                + (f" UNDER {policy['min_ratio']:g}" if item["flagged"] else "")
                + f", equalized-odds difference {figure(odds)}",
            )
        )
        rows += [
            (f"{item['attribute']} = {g['group']}",
             f"{g['rows']} rows{'' if g['counted'] else ' (too few to count)'}, {chosen} "
             f"{figure(g['selection_rate'])}, TPR {figure(g['true_positive_rate'])}, "
             f"FPR {figure(g['false_positive_rate'])}, ROC AUC {figure(g['roc_auc'])}")
            for g in item["groups"]
        ]  # fmt: skip
    note = (
        f"On the {summary['rows']} holdout rows, as fairlearn defines the figures. The ratio compares the "
        f"share {chosen} in each group with {policy['min_group_rows']} or more rows; under "
        f"{policy['min_ratio']:g} fails the four-fifths rule. The promotion gate "
        + ("refuses" if policy["gate"] == "refuse" else "warns about")
        + " a version that fails it."
    )
    return Section(title, rows, (note,))


def _protected(facts: dict[str, Any]) -> Section:
    """The protected attributes the model may use and why, the mitigation, and the inputs that proxy them."""
    title = "Protected attributes"
    found = facts.get("protected") or {}
    names, justified = found.get("attributes", []), found.get("justified_inputs", {})
    rows: Rows = [
        ("protected", ", ".join(names) or "none named (`protected:`)"),
        ("used as inputs", ", ".join(justified) or "none"),
        *((f"why {name} is an input", reason) for name, reason in justified.items()),
        ("accepted for monitoring only", ", ".join(found.get("monitored", [])) or "none"),
        ("mitigation at training", found.get("mitigation", "none")),
    ]
    paragraphs = []
    proxies = found.get("proxies")
    if proxies:
        rows += [(f"proxies of {name}", said) for name, said in describe_proxies(proxies)]
        paragraphs.append(
            f"Proxies: how well the model's inputs predict each protected attribute's groups on the training "
            f"rows ({proxies['folds']}-fold cross-validated one-vs-rest ROC AUC, averaged over groups: 0.5 "
            f"tells nothing, 1.0 names the group; from {proxies['strong']:g} an input stands in for the "
            "attribute well). A model without the attribute can still treat its groups differently through "
            "them."
        )
    return Section(title, rows, tuple(paragraphs))


def sections(facts: dict[str, Any]) -> list[Section]:
    """The card's sections, from the run's facts (see `training.job._card_facts`)."""
    m, data, card = facts["metrics"], facts["data"], facts["card"]
    limits = list(card["limits"])
    if facts["params"].get("scale_pos_weight", 1.0) > 1.0:
        limits.append(
            f"Scores are not calibrated probabilities: training weighted the positive class "
            f"{facts['params']['scale_pos_weight']:.2f} times (scale_pos_weight), which raises every score; "
            "compare scores with the threshold, not with observed rates."
        )
    limits.append(
        "Reason statements describe the direction that raises the risk for each feature; the row's own "
        "value is shown beside them, and a feature may raise the risk in an unusual range."
    )
    reasons = facts["reasons"]
    return [
        Section(
            "Intended use",
            [("use", card["intended_use"] or "not stated in the config"),
             ("users", card["users"] or "not stated in the config"),
             ("decides", f"{data['target']} = {data['positive_label']} at or above the threshold")],
            (facts["description"],) if facts["description"] else (),
        ),
        Section(
            "Data",
            [("source", data["source"]), ("licence", card["data_licence"] or "not stated"),
             ("rows", f"{data['rows']:,}: {data['train_rows']:,} training, {data['holdout_rows']:,} holdout"),
             ("class balance", f"{data['positive_share']:.1%} {data['positive_label']}"),
             ("SHA-256", data["sha256"])],
        ),
        Section(
            "Features",
            [("model inputs", ", ".join(facts["inputs"])),
             ("not used", ", ".join(facts["dropped"]) or "none"),
             ("never a reason", ", ".join(reasons["excluded"]) if reasons else "no reason catalogue")],
        ),
        Section(
            "Performance",
            [("CV ROC AUC", f"{_f(m['cv_roc_auc'])} (logistic baseline {_f(m['baseline_cv_roc_auc'])})"),
             ("holdout ROC AUC", f"{_f(m['holdout_roc_auc'])} (logistic baseline "
              f"{_f(m['baseline_holdout_roc_auc'])})"),
             ("holdout cost per case", f"{m['holdout_business_cost_per_case']:.1f} "
              f"(baseline {m['baseline_holdout_business_cost_per_case']:.1f})"),
             ("baseline verdict", facts["baseline_verdict"])],
        ),
        Section(
            "Threshold and costs",
            [("threshold", _f(m["threshold"])),
             ("cost of a missed positive", f"{facts['costs']['false_negative']:g}"),
             ("cost of a false alarm", f"{facts['costs']['false_positive']:g}")],
            ("The threshold minimises the business cost per case on out-of-fold scores.",),
        ),
        _per_group(facts.get("fairness")),
        _protected(facts),
        Section(
            "Explanations",
            [("method", "exact TreeSHAP (XGBoost's pred_contribs), in log-odds, one-hot columns summed back"),
             ("additivity", f"base value + contributions = logit(score) within {facts['additivity']:.1e} "
              "on every holdout row")],
        ),
        Section("Known limits", [], tuple(limits)),
        Section(
            "Lineage",
            [("model", f"{facts['model_name']} version {facts['version']}"),
             ("training run", facts["run_id"]),
             ("code (git commit)", facts["git_commit"])],
            ("Promotions are recorded in the registry's audit history; `GET /model/card` on the proxy "
             "adds them to this card.",),
        ),
    ]  # fmt: skip


def markdown(parts: list[Section], title: str) -> str:
    """The card as Markdown."""
    lines = [f"# {title}", ""]
    for part in parts:
        lines += [f"## {part.title}", ""]
        if part.rows:
            lines += ["| | |", "|---|---|", *(f"| {k} | {v.replace('|', '/')} |" for k, v in part.rows), ""]
        lines += [*(f"{p}\n" for p in part.paragraphs)]
    return "\n".join(lines).rstrip() + "\n"


def page(parts: list[Section], title: str) -> str:
    """The card as one offline HTML page."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for part in parts:
        body.append(f"<h2>{html.escape(part.title)}</h2>")
        if part.rows:
            cells = "".join(
                f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in part.rows
            )
            body.append(f"<table>{cells}</table>")
        body += [f"<p>{html.escape(p)}</p>" for p in part.paragraphs]
    style = (
        "body{font-family:sans-serif;max-width:52em;margin:1em auto}th{text-align:left;padding-right:1em;"
        "vertical-align:top}td,th{border-bottom:1px solid #ddd;padding:.2em .5em}"
    )
    return (
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{style}</style>"
        + "".join(body)
    )
