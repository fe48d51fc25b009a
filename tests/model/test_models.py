"""Every registered model through the one interface: shapes, a finite loss with
gradients, scores as inner products of the final tables, and a short training run whose
validation recall (the better of two learning rates) beats the popularity ranking. Also
the registry's names, presets and options, the popularity model against its definition,
and `egodgl models`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import bpr_reference, float64_model

from ego_dgl.cli import main
from ego_dgl.data import Dataset, WordBag, load_dataset
from ego_dgl.errors import ConfigError
from ego_dgl.model.base import Recommender
from ego_dgl.model.registry import MODELS, PRESETS, build_model, resolve_model
from ego_dgl.train import resolve_options, train
from ego_dgl.train.config_file import parse_params
from ego_dgl.train.loading import configs_of

pytestmark = pytest.mark.usefixtures("one_thread")

TRAINABLE = [name for name in MODELS if MODELS[name].model_type().trainable]


def model_on(ds, name: str, **given) -> Recommender:
    _, cfg, _, _ = resolve_options({"dataset": ds.name, "model": name, "device": "cpu", **given})
    torch.manual_seed(0)
    return build_model(ds, cfg, "cpu")



@pytest.mark.parametrize("name", list(MODELS))
def test_interface_shapes_scores_and_loss(tiny, name):
    model = model_on(tiny, name)
    tables = model.final_tables()
    assert tables.users.shape[0] == tiny.num_users and tables.items.shape[0] == tiny.num_items
    assert tables.users.shape[1] == tables.items.shape[1] and not tables.users.requires_grad
    inputs = model.input_tables()
    assert inputs.users.shape[0] == tiny.num_users and inputs.items.shape[0] == tiny.num_items
    users, items = torch.tensor([0, 1, 2]), torch.tensor([5, 6, 7])
    expected = torch.stack([tables.users[u] @ tables.items[i] for u, i in zip(users, items)])
    assert torch.allclose(model.score(tables, users, items), expected, atol=1e-5)
    if not model.trainable:
        return
    loss, parts = model.loss(users, items, torch.tensor([9, 10, 11]), 1e-4)
    assert torch.isfinite(loss) and "reg" in parts  # and the loss's own terms (BM3 has no BPR)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.fixture(scope="module")
def small():
    """Planted tastes that a graph model must find: popularity alone is far behind."""
    return load_dataset("synthetic-x0.2")


@pytest.fixture(scope="module")
def pop_recall(small, tmp_path_factory):
    _, cfg, train_cfg, _ = resolve_options({"dataset": small.name, "model": "pop", "device": "cpu"})
    return train(small, cfg, train_cfg, tmp_path_factory.mktemp("pop") / "run", progress=False).valid["recall@10"]


# The learning rates a short run may pick from on validation (as `compare --tune lr=...`
# does): no single rate suits every model in 12 epochs (HUIGN needs the larger one,
# DisenGCN the smaller; measured on synthetic-x0.2).
SHORT_RUN_LRS = (1e-3, 5e-3)


# BM3 learns no popularity (its cosine losses leave out the norms that carry it): on
# synthetic-x0.2 it levels off below the popularity ranking (best validation recall@10
# 0.081 against 0.086 in 30 epochs at lr 5e-3; measured), on ml100k it passes popularity
# by epoch 10. tests/test_field_runs.py checks that it learns.
BELOW_POPULARITY = {"bm3"}


@pytest.mark.parametrize("name", [name for name in TRAINABLE if name not in BELOW_POPULARITY])
def test_short_training_beats_popularity(small, pop_recall, name, tmp_path):
    recalls = []
    for lr in SHORT_RUN_LRS:  # the best validation recall of the grid; stop at the first that beats pop
        given = {"dataset": small.name, "model": name, "device": "cpu", "epochs": 12, "patience": 12, "lr": lr}
        _, cfg, train_cfg, _ = resolve_options(given)
        recalls.append(train(small, cfg, train_cfg, tmp_path / f"lr{lr:g}", progress=False).valid["recall@10"])
        if recalls[-1] > pop_recall:
            break
    assert max(recalls) > pop_recall, (name, recalls, pop_recall)


def test_popularity_ranks_by_training_counts(tiny, tmp_path):
    """Dense reference: every user's scores are the items' training interaction counts."""
    model = model_on(tiny, "pop")
    counts = np.zeros(tiny.num_items)
    for _, item in tiny.train:
        counts[item] += 1
    scores = (model.final_tables().users @ model.final_tables().items.T).numpy()
    assert np.array_equal(scores, np.tile(counts, (tiny.num_users, 1)))
    _, cfg, train_cfg, _ = resolve_options({"dataset": "synthetic-tiny", "model": "pop", "device": "cpu"})
    result = train(tiny, cfg, train_cfg, tmp_path / "run", progress=False)
    assert result.epochs_run == 1 and result.best_epoch == 1  # nothing to train: one epoch
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model_name"] == "pop" and config["model"] == {}


def test_presets_expand_and_refuse_contradictions():
    assert resolve_model("egogcn-soft") == ("egogcn", {"fusion": "ego", "mode": "soft"})
    _, cfg, _, _ = resolve_options({"dataset": "synthetic-tiny", "model": "gm"})
    assert cfg.fusion == "gm"
    _, cfg, _, _ = resolve_options({"dataset": "synthetic-tiny", "model": "egogcn-hard", "mode": "hard", "eps": 0.3})
    assert (cfg.mode, cfg.eps) == ("hard", 0.3)
    with pytest.raises(ConfigError, match="--model egogcn-soft sets --mode soft"):
        resolve_options({"dataset": "synthetic-tiny", "model": "egogcn-soft", "mode": "hard"})
    with pytest.raises(ConfigError, match="is not one of"):
        resolve_model("no-such-model")
    for name, (model, _) in PRESETS.items():
        assert model in MODELS and name not in MODELS


def test_options_of_another_model_are_refused():
    with pytest.raises(ConfigError, match="--eps is not an option of --model pop"):
        resolve_options({"dataset": "synthetic-tiny", "model": "pop", "eps": 0.3})


def test_params_are_typed_by_the_models_options():
    assert parse_params(["layers_mm=3", "eps=0.25", "mode=soft"]) == {"layers_mm": 3, "eps": 0.25, "mode": "soft"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_params(["layers_mm"])
    with pytest.raises(ConfigError, match="must be a int"):
        parse_params(["layers_mm=three"])
    with pytest.raises(ConfigError, match="no model has this option"):
        parse_params(["colour=red"])


def test_configs_of_runs_from_before_the_registry_are_egogcn():
    _, cfg, train_cfg, _ = resolve_options({"dataset": "synthetic-tiny"})
    from dataclasses import asdict

    config = {"model": asdict(cfg), "train": {**asdict(train_cfg), "ks": list(train_cfg.ks)}}
    assert configs_of(config)[0] == cfg


def test_cli_models_and_train_with_a_model(tmp_path):
    runner = CliRunner()
    listing = runner.invoke(main, ["models"])
    assert listing.exit_code == 0 and all(name in listing.stdout for name in [*MODELS, *PRESETS])
    result = runner.invoke(main, ["train", "--model", "pop", "--dataset", "synthetic-tiny", "--device", "cpu", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.endswith("-pop")
    bad = runner.invoke(main, ["train", "--model", "pop", "--eps", "0.3", "--dataset", "synthetic-tiny", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "not an option of --model pop" in bad.stderr
    param = runner.invoke(main, ["train", "--param", "layers_mm=1", "--epochs", "1", "--dataset", "synthetic-tiny", "--device", "cpu", "--out",
        str(tmp_path)])
    assert param.exit_code == 0, param.output
    configs = [json.loads((d / "config.json").read_text()) for d in (tmp_path / "runs").iterdir()]
    assert sorted(c["model_name"] for c in configs) == ["egogcn", "pop"]
    assert [c["model"]["layers_mm"] for c in configs if c["model_name"] == "egogcn"] == [1]


@pytest.mark.parametrize("name, width", [("grcn", {"content_dim": 8}), ("mmgcn", {"latent_dim": 8})])
def test_word_bag_text_and_a_missing_modality_train(name, width):
    """The multimodal-by-design models take any modality through ItemFeatures: a word-bag
    text (item 4 without words) beside a dense modality that item 2 lacks."""
    rng = np.random.default_rng(3)
    P, Q = 5, 7
    train = np.array([(0, 0), (0, 1), (1, 1), (1, 2), (2, 3), (3, 4), (3, 5), (4, 6), (4, 0)], dtype=np.int64)
    bag = WordBag(np.array([0, 0, 1, 2, 3, 5, 6]), np.array([1, 2, 0, 3, 3, 4, 2]), num_words=5)  # item 4: no words
    mask = np.array([1, 1, 0, 1, 1, 1, 1], dtype=bool)  # item 2 lacks the visual modality
    ds = Dataset("bags", P, Q, train, train[:1], train[:1], {"v": rng.normal(size=(Q, 6)).astype(np.float32), "t": bag}, {"v": mask})
    torch.manual_seed(0)
    model = build_model(ds, resolve_options({"dataset": "bags", "model": name, "dim": 8, "word_dim": 4, **width})[1])
    loss, _ = model.loss(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([3, 4]), 1e-3)
    loss.backward()
    assert torch.isfinite(loss)
    table = model.item_features.bags["1"].table
    assert table.grad[[0, 1, 2, 3]].abs().sum(1).gt(0).all()  # every used word learns


@pytest.mark.parametrize("name", ["grcn", "mmgcn"])
def test_a_model_built_on_modalities_refuses_a_dataset_without_any(name):
    train = np.array([(0, 0), (1, 1)], dtype=np.int64)
    ds = Dataset("plain", 2, 2, train, train[:1], train[:1], {})
    with pytest.raises(ConfigError, match="has no modality"):
        build_model(ds, resolve_options({"dataset": "plain", "model": name})[1])


@pytest.mark.parametrize("name, options, id_table", [
    ("grcn", {"content_dim": 10}, lambda model: model.ids.table),
    ("mmgcn", {"latent_dim": 12}, lambda model: model.ids),
], ids=["grcn", "mmgcn"])
def test_loss_regularises_the_id_and_preference_rows(tiny, name, options, id_table):
    """GRCN and MMGCN: BPR plus the mean squares of the batch's user and item ID rows and
    of its users' preference rows in every modality."""
    model = float64_model(tiny, name, **options)
    users, pos, neg = torch.tensor([0, 3]), torch.tensor([1, 2]), torch.tensor([4, 5])
    loss, parts = model.loss(users, pos, neg, 0.01)
    bpr = bpr_reference(model, users, pos, neg)
    ids = id_table(model)
    reg = ids[users].pow(2).mean() + ids[tiny.num_users + torch.cat([pos, neg])].pow(2).mean()
    reg = reg + sum(table[users].pow(2).mean() for table in model.preferences.tables)
    assert parts["bpr"].item() == pytest.approx(bpr, abs=1e-9)
    assert loss.item() == pytest.approx(bpr + 0.01 * reg.item(), abs=1e-9)
