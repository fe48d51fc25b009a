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
        mods.add_row(escape(m["name"]), escape(m["kind"]), f"{m['dim']:,}", f"{m['items_with']:,}", f"{m['coverage']:.1%}")
    return Group(sizes, mods)


def card_table(card: dict) -> Group:
    """A dataset card (`egodgl data build`): sources, counts after each step, split and
    where each modality came from."""
    from rich.markup import escape

    sources = Table(title=f"built by {escape(card['built_by'])} in {card['build_seconds']} s", title_justify="left")
    sources.add_column("source")
    sources.add_column("sha256")
    for s in card["sources"]:
        sources.add_row(escape(s["path"]), escape(s["sha256"][:16]))
    counts = Table(title="interactions", title_justify="left")
    for col, justify in (("stage", "left"), ("interactions", "right"), ("users", "right"), ("items", "right")):
        counts.add_column(col, justify=justify)
    for c in card["counts"]:
        counts.add_row(escape(c["stage"]), f"{c['interactions']:,}", f"{c['users']:,}", f"{c['items']:,}")
    split = card["split"]
    caption = (f"split {split['kind']} {':'.join(f'{r:g}' for r in split['ratios'])} per user: "
               + ", ".join(f"{s} {n:,}" for s, n in split["sizes"].items())
               + f"; {split['users_train_only']:,} users too small to split keep all in train")
    if "variant" in card:  # cold items / train fraction (data/variants.py)
        v = card["variant"]
        caption += (f"; variant (seed {v['seed']}): {v['cold_item_count']:,} cold items, "
                    f"{v['train_fraction']:g} of each user's training interactions kept")
    counts.caption = escape(caption)  # the split's kind and names come from the file
    mods = Table(title="modalities built", title_justify="left")
    for col, justify in (("modality", "left"), ("kind", "left"), ("from", "left"), ("dim", "right"), ("coverage", "right")):
        mods.add_column(col, justify=justify)
    for m in card["modalities"]:
        origin = ", ".join(m.get("columns", [])) or m.get("file") or "recipe"
        mods.add_row(escape(m["name"]), escape(m["kind"]), escape(origin), f"{m['dim']:,}", f"{m['coverage']:.1%}")
    return Group(sources, counts, mods)
