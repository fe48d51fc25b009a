"""The warm / cold / cold-all figures of a comparison on a dataset with cold items
(evaluate.COLD_GROUPS): cold.csv and a second table in table.md, each model's mean ± std
over its seeds, "refused" where the model declares it cannot score cold items, and the
paired tests of the comparison's best pair on the same figures."""

from __future__ import annotations

from typing import Any

import numpy as np

from ego_dgl.evaluate import COLD_GROUPS

GROUP_METRICS = tuple(f"{g}/{m}" for g in COLD_GROUPS for m in ("recall@10", "ndcg@10"))


def member_values(members: list[dict[str, Any]], metric: str) -> list[float] | None:
    """The test figure of every seed, or None when any seed lacks it (refused)."""
    values = [m.get(f"test/{metric}", "") for m in members]
    return None if any(v in ("", None) for v in values) else [float(v) for v in values]


def group_summary(labels: list[str], members: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """cold.csv: per model, mean and std (ddof 1; 0 for one seed) of each group metric;
    empty when no cell has warm figures (a dataset without cold items)."""
    if not any(member_values(members[name], GROUP_METRICS[0]) for name in labels if members[name]):
        return []
    out = []
    for name in labels:
        row: dict[str, Any] = {"name": name, "seeds": len(members[name])}
        for metric in GROUP_METRICS:
            values = member_values(members[name], metric)
            row[f"{metric}_mean"] = "refused" if values is None else float(np.mean(values))
            row[f"{metric}_std"] = "refused" if values is None else (float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)
        out.append(row)
    return out


def group_markdown(summary: list[dict[str, Any]], paired: list[dict[str, Any]]) -> list[str]:
    """table.md's warm/cold table: test R@10 and NDCG@10 per group, and the paired tests."""
    head = ["model", "seeds", *GROUP_METRICS]
    legend = ("warm: held-out warm items ranked among warm items; cold: held-out cold items among cold items; "
              "cold-all: held-out cold items among all items (evaluate.py). 'refused': the model declares cold_start 'none'.")
    lines = ["", "## Warm and cold items", "", legend, "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for e in summary:
        cells = [e[f"{m}_mean"] if e[f"{m}_mean"] == "refused" else f"{e[f'{m}_mean']:.4f} ± {e[f'{m}_std']:.4f}"
                 for m in GROUP_METRICS]
        lines.append("| " + " | ".join([e["name"], str(e["seeds"]), *cells]) + " |")
    for r in paired:
        lines.append(f"- {r['metric']}: {r['variant']} {r['variant_mean']:.4f} vs {r['baseline']} {r['baseline_mean']:.4f}, "
                     f"p (paired t) {r['p_ttest'] if isinstance(r['p_ttest'], str) else format(r['p_ttest'], '.3g')}, "
                     f"{r['seeds']} seeds")
    return lines
