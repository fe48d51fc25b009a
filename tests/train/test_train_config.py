"""Option resolution: the paper's per-dataset defaults, overrides, incompatible options,
config files (TOML, YAML) and devices."""

import pytest
import torch

from ego_dgl.errors import ConfigError
from ego_dgl.train import resolve_options
from ego_dgl.train.config_file import load_config_file, merge_options
from ego_dgl.train.defaults import profile_for, run_label
from ego_dgl.train.trainer import resolve_device

PAPER = {  # docs/egogcn.md, "Hyper-parameters": (eps, K, L, lambda, lr, batch, D)
    "movielens": (0.4, 4, 3, 1e-4, 2e-4, 2048, 64),
    "tiktok": (0.6, 2, 2, 1e-3, 3e-4, 1024, 64),
}


@pytest.mark.parametrize("dataset,profile", [("ml100k", "movielens"), ("movielens", "movielens"), ("tiktok", "tiktok"),
                                             ("synthetic-tiktok", "tiktok"), ("/data/sets/tiktok/", "tiktok")])
def test_paper_hyper_parameters_per_dataset(dataset, profile):
    name, m, t, used = resolve_options({"dataset": dataset})
    assert name == dataset and used == profile
    assert (m.eps, m.layers_mm, m.layers_id, t.reg, t.lr, t.batch_size, m.dim) == PAPER[profile]
    assert (t.epochs, t.patience, m.mode, m.fusion) == (1000, 20, "hard", "ego")


def test_defaults_dataset_and_overrides():
    name, m, t, _ = resolve_options({})
    assert name == "ml100k" and m.layers_mm == 4
    _, m, t, _ = resolve_options({"dataset": "tiktok", "eps": 0.5, "layers_mm": 3, "lr": 1e-3, "batch_size": 64, "patience": 5})
    assert (m.eps, m.layers_mm, m.layers_id, t.lr, t.batch_size, t.patience, t.reg) == (0.5, 3, 2, 1e-3, 64, 5, 1e-3)
    assert profile_for("synthetic-x4") == "synthetic" and profile_for("my-own-folder") == "movielens"


@pytest.mark.parametrize("given,message", [
    ({"gate": "vector"}, "--gate applies to the soft"),
    ({"mode": "soft", "eps": 0.3}, "--eps is the hard-mode threshold"),
    ({"fusion": "gm", "eps": 0.3}, "--eps configures EGO fusion"),
    ({"branches": "id", "mode": "soft"}, "--mode configures the multimodal branch"),
    ({"mode": "medium"}, "--mode 'medium' is not one of"),
    ({"mode": "soft", "threshold": "relative"}, "--threshold says how the hard-mode threshold applies; drop it with --mode soft"),
    ({"fusion": "na", "threshold": "relative"}, "--threshold configures EGO fusion; it has no effect with --fusion na"),
    ({"model": "gm", "threshold": "absolute"}, "--threshold configures EGO fusion"),
    ({"threshold": "percent"}, "--threshold 'percent' is not one of: absolute, relative"),
    ({"epochs": 0}, "--epochs must be a positive integer"),
    ({"lr": -1.0}, "--lr must be positive"),
    ({"device": "tpu"}, "--device 'tpu'"),
    ({"protocol": "paper"}, "--protocol 'paper'"),
    ({"colour": "red"}, "unknown option 'colour'"),
])
def test_bad_or_incompatible_options(given, message):
    with pytest.raises(ConfigError, match=message):
        resolve_options(given)


def test_soft_mode_takes_a_gate_and_labels():
    _, m, t, _ = resolve_options({"mode": "soft", "gate": "vector"})
    assert (m.mode, m.gate) == ("soft", "vector") and run_label(m, t) == "soft"
    _, m, t, _ = resolve_options({"fusion": "gm", "protocol": "legacy"})
    assert run_label(m, t) == "gm-legacy"
    _, m, t, _ = resolve_options({"branches": "id"})
    assert run_label(m, t) == "id"


@pytest.mark.parametrize("name,text", [
    ("c.toml", 'dataset = "tiktok"\nlayers-mm = 3\nlr = 0.001\nmode = "soft"\ngate = "vector"\nepochs = 7\n'),
    ("c.yaml", "dataset: tiktok\nlayers_mm: 3\nlr: 0.001\nmode: soft\ngate: vector\nepochs: 7\n"),
])
def test_config_files_and_command_line_precedence(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    from_file = load_config_file(path)
    assert from_file == {"dataset": "tiktok", "layers_mm": 3, "lr": 0.001, "mode": "soft", "gate": "vector", "epochs": 7}
    given = merge_options(from_file, {"epochs": 2, "lr": None, "dim": 16})
    dataset, m, t, _ = resolve_options(given)
    assert dataset == "tiktok" and (m.layers_mm, m.mode, m.gate, m.dim) == (3, "soft", "vector", 16)
    assert (t.epochs, t.lr, t.reg) == (2, 0.001, 1e-3)


@pytest.mark.parametrize("name,text,message", [
    ("c.toml", "layer = 3\n", "unknown key 'layer' in config file"),
    ("c.yaml", "lr: fast\n", "lr in .* must be a float"),
    ("c.toml", "epochs = [\n", "is not valid TOML"),
    ("c.yaml", "- 1\n- 2\n", "must hold a mapping"),
    ("c.json", "{}", "must end in .toml, .yaml or .yml"),
])
def test_bad_config_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config_file(path)


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")
