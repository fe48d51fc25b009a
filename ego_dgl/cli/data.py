"""`egodgl data`: prepare, inspect, build, convert and partition datasets."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from ego_dgl.cli.group import console, main
from ego_dgl.cli.options import DATASETS_ROOT
from ego_dgl.cli.ranges import COUNT, FINITE, POSITIVE, SEED


@main.group()
def data() -> None:
    """Prepare, inspect and convert datasets."""


@data.command("prepare")
@click.argument("name")
@DATASETS_ROOT
@click.option("--force", is_flag=True, help="Rebuild even when an up-to-date prepared copy exists.")
@click.option("--cold-items", type=float, default=0.0, show_default=True,
              help="Also prepare the variant NAME-cold<share>: this share of the items has every interaction in valid/test.")
@click.option("--train-fraction", type=float, default=1.0, show_default=True,
              help="Also prepare the variant NAME-train<share>: this share of each user's training interactions (at least one) kept.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the variant's draws (in its name when not 0).")
def data_prepare(name: str, root: Path | None, force: bool, cold_items: float, train_fraction: float, seed: int) -> None:
    """Prepare NAME (ml100k, synthetic-tiktok and their variants such as ml100k-cold0.1:
    built once into the datasets folder; other names and folders: loaded and checked)
    and show its summary."""
    from ego_dgl.data import load_dataset, prepare
    from ego_dgl.data.registry import CACHED, is_prepared_name
    from ego_dgl.data.report import summary_table
    from ego_dgl.data.variants import Variant, variant_name

    variant = Variant(cold_items, train_fraction, seed).check()
    if not variant.is_identity:
        if name not in CACHED:
            from ego_dgl.errors import DataError

            raise DataError(f"--cold-items and --train-fraction make variants of {', '.join(CACHED)}; "
                            "for other data use: egodgl data build ... --cold-items / --train-fraction")
        name = variant_name(name, variant)
    if is_prepared_name(name):
        prepare(name, root, progress=True, force=force)
    console.print(summary_table(load_dataset(name, root)))
    if not variant.is_identity:
        console.print(f"prepared {name}; train on it with: egodgl train --dataset {name}", highlight=False, markup=False, soft_wrap=True)


@data.command("info")
@click.argument("dataset")
@DATASETS_ROOT
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_info(dataset: str, root: Path | None, as_json: bool) -> None:
    """Users, items, interactions per split, density and modalities of DATASET
    (a built-in name or a folder in MMRec or GRCN layout), and its card when it has one."""
    from ego_dgl.data import load_dataset
    from ego_dgl.data.build import read_card
    from ego_dgl.data.registry import dataset_folder
    from ego_dgl.data.report import card_table, summary_table

    ds = load_dataset(dataset, root)
    folder = dataset_folder(dataset, root)
    card = read_card(folder) if folder.is_dir() else None
    if as_json:
        click.echo(json.dumps(ds.summary() | ({"card": card} if card else {}), indent=2))
    else:
        console.print(summary_table(ds))
        if card:
            console.print(card_table(card))


@data.command("build")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--interactions", type=click.Path(dir_okay=False), required=True,
              help="Interactions table: .csv, .tsv, .parquet or RecBole .inter.")
@click.option("--items", type=click.Path(dir_okay=False), default=None, help="Item table (same types, or RecBole .item).")
@click.option("--user", default="user_id", show_default=True, help="User column of the interactions.")
@click.option("--item", default="item_id", show_default=True, help="Item column of the interactions (and of the item table).")
@click.option("--item-key", default=None, help="Item id column of the item table [default: --item].")
@click.option("--rating", default="rating", show_default=True, help="Rating column (read with --min-rating).")
@click.option("--time", "time_col", default="timestamp", show_default=True, help="Time column (read with --split temporal).")
@click.option("--title", default=None, help="Item-table column shown as the item's title by `egodgl recommend`.")
@click.option("--min-rating", type=FINITE, default=None, help="Keep interactions rated at least this (implicit feedback).")
@click.option("--k-core", type=COUNT, default=0, show_default=True, help="Drop users and items with fewer interactions, repeatedly.")
@click.option("--split", type=click.Choice(["random", "temporal"]), default="random", show_default=True,
              help="Per user: at random (seeded) or by time (the latest to valid and test).")
@click.option("--ratios", default="8:1:1", show_default=True, help="train:valid:test per user.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the random split.")
@click.option("--text", multiple=True, metavar="NAME=COLS", help="Sentence embedding (all-MiniLM-L6-v2) of item-table columns; repeatable.")
@click.option("--categories", multiple=True, metavar="NAME=COL[:SEP]",
    help="Multi-hot of a column of SEP-separated categories (default '|'); repeatable.")
@click.option("--numbers", multiple=True, metavar="NAME=COLS", help="Standardised numeric columns; repeatable.")
@click.option("--embedding", multiple=True, metavar="NAME=FILE",
              help="Precomputed vectors keyed by raw item id: .parquet (id column + vector column) or .npy with FILE.ids.txt; repeatable.")
@click.option("--name", default=None, help="Dataset name [default: the interactions file's name].")
@click.option("--cold-items", type=float, default=0.0, show_default=True,
              help="Share of the items made cold: every interaction in valid/test (split by --ratios), none in train.")
@click.option("--train-fraction", type=float, default=1.0, show_default=True,
              help="Share of each user's training interactions kept (at least one; valid/test unchanged).")
@click.option("--encoding", default="utf-8", show_default=True,
              help="Text encoding of the CSV/TSV tables and embedding id files, e.g. latin-1 (MovieLens-1M's).")
@click.option("--overwrite", is_flag=True, help="Replace OUT (atomically) if it exists.")
def data_build(out: Path, overwrite: bool, **options) -> None:
    """Build dataset OUT (MMRec layout plus card.json and README.md) from an interactions
    table and an item table; train on it with `egodgl train --dataset OUT`."""
    from ego_dgl.data.build import build, check_config, check_destination, config_from_options, write_built
    from ego_dgl.data.progress import steps
    from ego_dgl.data.registry import datasets_root
    from ego_dgl.data.report import card_table
    from ego_dgl.data.text import cache_folder

    cfg = config_from_options(out, **options)
    check_config(cfg)
    check_destination(out, overwrite)
    with steps(Console(stderr=True, emoji=False).is_terminal) as s:  # live bars only where someone watches
        built = build(cfg, s, cache_folder(datasets_root()))
        with s.step(f"writing {out}"):
            write_built(built, out, overwrite)
    console.print(card_table(built.card))
    console.print(f"wrote {out}; train on it with: egodgl train --dataset {out}", highlight=False, soft_wrap=True,
                  markup=False)


@data.command("convert")
@click.argument("src")
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--to", "layout", type=click.Choice(["mmrec", "grcn"]), required=True, help="Layout to write.")
@DATASETS_ROOT
@click.option("--overwrite", is_flag=True, help="Replace DST if it is a folder ego-dgl wrote (any other is refused).")
def data_convert(src: str, dst: Path, layout: str, root: Path | None, overwrite: bool) -> None:
    """Write dataset SRC (a name or a folder) into folder DST in the MMRec or GRCN layout."""
    from ego_dgl.data import load_dataset, write_grcn, write_mmrec
    from ego_dgl.data.files import check_separate

    if Path(src).is_dir():
        check_separate(Path(src), dst)
    ds = load_dataset(src, root)
    (write_mmrec if layout == "mmrec" else write_grcn)(ds, dst, overwrite=overwrite)
    console.print(f"wrote {escape(ds.name)} to {escape(str(dst))} ({layout} layout)", highlight=False)


@data.command("partition")
@click.argument("dataset")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--parts", type=POSITIVE, required=True, help="Number of partitions (one per machine of the DistDGL job).")
@click.option("--method", type=click.Choice(["metis", "random"]), default="metis", show_default=True, help="How nodes are assigned to partitions.")
@DATASETS_ROOT
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is a folder ego-dgl wrote (any other is refused).")
def data_partition(dataset: str, out: Path, parts: int, method: str, root: Path | None, overwrite: bool) -> None:
    """Cut DATASET's training graph (users, items, both edge directions) into DistDGL
    partitions in folder OUT; train on them with egodgl dist-launch ... -- train --dist OUT/<name>.json."""
    from ego_dgl.data import load_dataset
    from ego_dgl.distributed.partition import partition_dataset
    from ego_dgl.train.records import dataset_source

    if Path(dataset).is_dir():
        from ego_dgl.data.files import check_separate

        check_separate(Path(dataset), out)
    ds = load_dataset(dataset, root)
    config = partition_dataset(ds, dataset_source(dataset)["source"], out, parts, method, overwrite)
    console.print(f"wrote {parts} {method} partition(s) of {escape(ds.name)} to {escape(str(out))}; train on them with: "
                  f"egodgl dist-launch --parts-config {escape(str(config))} --trainers {parts} -- train", highlight=False, soft_wrap=True)
