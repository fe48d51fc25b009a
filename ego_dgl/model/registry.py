"""Every model by name: its class, its config dataclass and a line on what it is, plus
the preset names `train --model` and `compare` accept (a model with some options set,
e.g. `egogcn-soft` or Table 4's ablations).

To add a model: write `ego_dgl/model/baselines/<name>.py` (or a family subpackage) with a
config extending `model.config.RecommenderConfig` (fields with defaults, a ClassVar
`name`, a `validate()` that raises ConfigError) and a `Recommender` subclass built as
`Model(ds, cfg)`; then add one `ModelSpec` line below (README, "how to add a model").
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from importlib import import_module
from typing import Any

import torch

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.model.base import Recommender
from ego_dgl.model.config import RecommenderConfig


@dataclass(frozen=True)
class ModelSpec:
    """Where a model lives (module, class and config class names) and what it is."""

    module: str
    model_class: str
    config_class: str
    summary: str

    def config_type(self) -> type[RecommenderConfig]:
        return getattr(import_module(f"ego_dgl.model.{self.module}"), self.config_class)

    def model_type(self) -> type[Recommender]:
        return getattr(import_module(f"ego_dgl.model.{self.module}"), self.model_class)


MODELS: dict[str, ModelSpec] = {
    "egogcn": ModelSpec("egogcn.model", "EgoGCN", "ModelConfig", "EgoGCN (Chen et al. MM 2022): EGO fusion, routing, LightGCN ID branch"),
    # Table 3's baselines, in the paper's order
    "graphsage": ModelSpec("baselines.graphsage", "GraphSAGE", "GraphSAGEConfig", "GraphSAGE (Hamilton et al. NeurIPS 2017), dgl.nn.SAGEConv per edge type, early-fused inputs"),
    "ngcf": ModelSpec("baselines.ngcf", "NGCF", "NGCFConfig", "NGCF (Wang et al. SIGIR 2019) on early-fused multimodal inputs"),
    "disengcn": ModelSpec("baselines.disengcn", "DisenGCN", "DisenGCNConfig", "DisenGCN (Ma et al. ICML 2019): factor-wise neighbourhood routing on early-fused inputs"),
    "gat": ModelSpec("baselines.gat", "GAT", "GATConfig", "GAT (Velickovic et al. ICLR 2018), dgl.nn.GATConv per edge type, early-fused inputs"),
    "mmgcn": ModelSpec("baselines.mmgcn", "MMGCN", "MMGCNConfig", "MMGCN (Wei et al. MM 2019): a graph per modality, ID-enriched combination, modality sum"),
    "huign": ModelSpec("baselines.huign", "HUIGN", "HUIGNConfig", "HUIGN (Wei et al. 2021): hierarchical intents from co-interacted item graphs, per modality"),
    "lightgcn": ModelSpec("baselines.lightgcn", "LightGCN", "LightGCNConfig", "LightGCN (He et al. SIGIR 2020) on early-fused multimodal inputs"),
    "grcn": ModelSpec("baselines.grcn", "GRCN", "GRCNConfig", "GRCN (Wei et al. MM 2020): content-refined, pruned graph under an ID GCN; ID and modalities concatenated"),
    # the field's current models (MMRec's set)
    "bm3": ModelSpec("field.bm3", "BM3", "BM3Config", "BM3 (Zhou et al. WWW 2023): self-supervised bootstrapping, dropout views, no negative sampling"),
    "mgcn": ModelSpec("field.mgcn", "MGCN", "MGCNConfig", "MGCN (Yu et al. MM 2023): purified modality views on kNN item graphs, attention fusion, InfoNCE"),
    "lgmrec": ModelSpec("field.lgmrec", "LGMRec", "LGMRecConfig", "LGMRec (Guo et al. AAAI 2024): local graph embeddings plus a global hypergraph of learned hyperedges"),
    "bpr": ModelSpec("baselines.bpr", "BPRMF", "BPRConfig", "BPR-MF (Rendle et al. UAI 2009): matrix factorisation with the BPR loss (the floor a graph model has to beat)"),
    "pop": ModelSpec("baselines.pop", "Popularity", "PopConfig", "items ranked by their number of training interactions (the floor)"),
    # the field's models (MMRec's set)
    "vbpr": ModelSpec("field.vbpr", "VBPR", "VBPRConfig", "VBPR (He & McAuley AAAI 2016): MF with projected item content; no graph"),
    "lattice": ModelSpec("field.lattice", "LATTICE", "LATTICEConfig", "LATTICE (Zhang et al. MM 2021): learned + initial content kNN item graphs, LightGCN"),
    "freedom": ModelSpec("field.freedom", "FREEDOM", "FREEDOMConfig", "FREEDOM (Zhou & Shen MM 2023): frozen content kNN item graph, degree-pruned LightGCN"),
}

# name -> (model, options): the paper's variants (Table 3 and 4) under their own names
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "egogcn-hard": ("egogcn", {"fusion": "ego", "mode": "hard"}),
    "egogcn-soft": ("egogcn", {"fusion": "ego", "mode": "soft"}),
    "gm": ("egogcn", {"fusion": "gm"}),
    "na": ("egogcn", {"fusion": "na"}),
    "id-only": ("egogcn", {"branches": "id"}),
    "soft-pruning": ("egogcn", {"fusion": "ego", "mode": "hard", "id_weights": "soft-pruning"}),
}


def model_names() -> list[str]:
    """Every name `--model` takes: the models, then the presets."""
    return [*MODELS, *PRESETS]


def resolve_model(name: str) -> tuple[str, dict[str, Any]]:
    """(model name, the options a preset sets) for a model or preset name."""
    if name in MODELS:
        return name, {}
    if name in PRESETS:
        return PRESETS[name][0], dict(PRESETS[name][1])
    raise ConfigError(f"--model {name!r} is not one of: {', '.join(model_names())}")


def config_type(model: str) -> type[RecommenderConfig]:
    """The config dataclass of a model name."""
    return MODELS[model].config_type()


def config_fields(model: str) -> dict[str, type]:
    """A model's options and their types (int, float, str, bool)."""
    cls = config_type(model)
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def all_option_types() -> dict[str, type]:
    """Every model option of every model, with its type (for config files)."""
    types: dict[str, type] = {}
    for name in MODELS:
        types.update(config_fields(name))
    return types


def model_name(cfg: RecommenderConfig) -> str:
    """The registry name of a config object."""
    return type(cfg).name


def build_model(ds: Dataset, cfg: RecommenderConfig, device: torch.device | str = "cpu") -> Recommender:
    """The model `cfg` configures, on `ds`, moved to `device`."""
    return MODELS[model_name(cfg)].model_type()(ds, cfg.validate()).to(device)
