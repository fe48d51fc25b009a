"""GraphSAGE baseline against a dense, loop-by-loop float64 reference of Algorithm 1 with
SAGEConv's aggregators on synthetic-tiny (no DGL in the reference: the layers' own
parameter tensors, Python loops over each node's neighbours)."""

from __future__ import annotations

import pytest
import torch
from conftest import early_fusion_reference, float64_model, neighbours

from ego_dgl.errors import ConfigError
from ego_dgl.graph import backends
from ego_dgl.model.registry import build_model
from ego_dgl.train import resolve_options


def sage_node(conv, aggregator: str, own: torch.Tensor, others: list[torch.Tensor]) -> torch.Tensor:
    """SAGEConv's output for one destination node from its input and its neighbours'."""
    if aggregator == "gcn":
        mean = (own + sum(others, torch.zeros_like(own))) / (len(others) + 1)
        return conv.fc_neigh.weight @ mean + conv.bias
    if aggregator == "mean":
        h_n = sum(others) / len(others) if others else torch.zeros_like(own)
    else:  # pool: element-wise max of ReLU(W_pool h_j + b_pool)
        pooled = [torch.relu(conv.fc_pool.weight @ h + conv.fc_pool.bias) for h in others]
        h_n = torch.stack(pooled).max(0).values if pooled else torch.zeros_like(own)
    return conv.fc_self.weight @ own + conv.fc_self.bias + conv.fc_neigh.weight @ h_n


def sage_layer(conv, aggregator, own, other, own_nb, linear: bool = False) -> torch.Tensor:
    """h(k)_v = normalise(ReLU(SAGEConv(h(k-1)_v, {h(k-1)_j : j in N(v)}))), node by node;
    `linear`: SAGEConv's output as it is (the last layer with output=linear)."""
    rows = []
    for v in range(own.shape[0]):
        h = sage_node(conv, aggregator, own[v], [other[j] for j in own_nb[v]])
        if not linear:
            h = torch.relu(h)
            h = h / h.norm() if h.norm() > 0 else h
        rows.append(h)
    return torch.stack(rows)


@pytest.mark.parametrize(("aggregator", "layers", "output"),
                         [("mean", 0, "linear"), ("mean", 1, "linear"), ("mean", 3, "linear"), ("mean", 2, "paper"),
                          ("gcn", 2, "linear"), ("pool", 2, "paper")])
def test_graphsage_matches_the_reference(tiny, aggregator, layers, output):
    model = float64_model(tiny, "graphsage", layers=layers, aggregator=aggregator, output=output)
    users, items = early_fusion_reference(model, tiny)
    of_user, of_item = neighbours(tiny.train, tiny.num_users, tiny.num_items)
    for k, conv in enumerate(model.convs):
        to_items, to_users = conv.mods["clicks"], conv.mods["clicked_by"]
        linear = output == "linear" and k == layers - 1
        users, items = (sage_layer(to_users, aggregator, users, items, of_user, linear),
                        sage_layer(to_items, aggregator, items, users, of_item, linear))
    tables = model.final_tables()
    assert tables.users.shape == (tiny.num_users, model.cfg.dim)
    assert torch.allclose(tables.users, users, atol=1e-6) and torch.allclose(tables.items, items, atol=1e-6)


def test_each_edge_type_has_its_own_layer(tiny):
    model = float64_model(tiny, "graphsage")
    assert len(model.convs) == 2  # the paper's K = 2
    for conv in model.convs:
        assert conv.mods["clicks"].fc_self.weight.data_ptr() != conv.mods["clicked_by"].fc_self.weight.data_ptr()


def test_bad_aggregator_or_output_is_refused():
    with pytest.raises(ConfigError, match="aggregator='lstm' is not one of"):
        resolve_options({"dataset": "synthetic-tiny", "model": "graphsage", "aggregator": "lstm"})
    with pytest.raises(ConfigError, match="output='tanh' is not one of: linear, paper"):
        resolve_options({"dataset": "synthetic-tiny", "model": "graphsage", "output": "tanh"})


def test_a_device_dgl_cannot_run_on_is_refused(tiny, monkeypatch):
    """The PyPI DGL is CPU-only: moving the model where DGL cannot run is one clear error."""
    model = float64_model(tiny, "graphsage")
    monkeypatch.setattr("ego_dgl.model.layers.hetero_conv._dgl_runs_on", lambda device: False)
    monkeypatch.setattr(type(model), "device", property(lambda self: torch.device("meta")))
    with pytest.raises(ConfigError, match="installed DGL cannot run on meta"):
        model.float()


def test_double_keeps_the_graph_and_converts_the_parameters(tiny):
    _, cfg, _, _ = resolve_options({"dataset": tiny.name, "model": "graphsage"})
    model = build_model(tiny, cfg, "cpu")
    graph = model.graph
    model.double()
    assert model.graph is graph and model.final_tables().users.dtype == torch.float64
    assert backends._dgl_runs_on("cpu") and model.backend == "dgl"
