"""A dataset's summary as rich tables, for `egodgl data info` and run logs."""

from __future__ import annotations

from rich.console import Group
from rich.markup import escape
from rich.table import Table

from ego_dgl.data.dataset import SPLITS, Dataset


def summary_table(ds: Dataset) -> Group:
    """Sizes and per-split counts, then one row per modality with dim and coverage."""
    s = ds.summary()
    sizes = Table(title=f"dataset {escape(s['name'])}", show_header=False, title_justify="left")
    sizes.add_column("what")
    sizes.add_column("count", justify="right")
    sizes.add_row("users", f"{s['users']:,}")
    sizes.add_row("items", f"{s['items']:,}")
    sizes.add_row("interactions", f"{s['interactions']:,}")
    for split in SPLITS:
        sizes.add_row(f"  {split}", f"{s['splits'][split]:,}")
    sizes.add_row("density", f"{s['density']:.4%}")
    mods = Table(title="modalities", title_justify="left")
    for col, justify in (("modality", "left"), ("kind", "left"), ("dim", "right"), ("items with", "right"),
                         ("coverage", "right")):
        mods.add_column(col, justify=justify)
    for m in s["modalities"]:
        mods.add_row(escape(m["name"]), m["kind"], f"{m['dim']:,}", f"{m['items_with']:,}", f"{m['coverage']:.1%}")
    return Group(sizes, mods)
