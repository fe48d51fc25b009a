"""DisenGCN baseline against a dense, loop-by-loop float64 reference of its DisenConv
layer (per-factor projection, neighbourhood routing with the softmax over the factors)
on synthetic-tiny, over the early-fusion inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import early_fusion_reference, float64_model, neighbours

from ego_dgl.errors import ConfigError
from ego_dgl.train import resolve_options


def unit(v: torch.Tensor) -> torch.Tensor:
    """v / ||v|| (v / 1e-12 for a zero vector, as the model's floor)."""
    return v / max(math.sqrt(float(v @ v)), 1e-12)


def project(conv, x: torch.Tensor, factors: int) -> list[list[torch.Tensor]]:
    """z[n][k] = normalize(leaky_relu(W_k x_n + b_k)), node by node, factor by factor."""
    width = x.shape[1] // factors
    z = []
    for n in range(x.shape[0]):
        rows = []
        for k in range(factors):
            w = conv.proj.weight[k * width : (k + 1) * width]
            b = conv.proj.bias[k * width : (k + 1) * width]
            rows.append(unit(F.leaky_relu(w @ x[n] + b)))
        z.append(rows)
    return z


def route(z_dst, z_src, of_dst: dict[int, list[int]], factors: int, iterations: int, tau: float) -> torch.Tensor:
    """Each destination's c after T routing iterations, edge by edge, factor by factor."""
    out = []
    for u, z_u in enumerate(z_dst):
        c = list(z_u)
        for _ in range(iterations):
            total = [torch.zeros_like(z_u[k]) for k in range(factors)]
            for v in of_dst[u]:
                logits = [float(z_src[v][k] @ c[k]) / tau for k in range(factors)]
                peak = max(logits)
                e = [math.exp(a - peak) for a in logits]
                for k in range(factors):
                    total[k] = total[k] + (e[k] / sum(e)) * z_src[v][k]
            c = [unit(z_u[k] + total[k]) for k in range(factors)]
        out.append(torch.cat(c))
    return torch.stack(out)


@torch.no_grad()
def reference(model, ds, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    users, items = early_fusion_reference(model, ds)
    of_user, of_item = neighbours(ds.train, ds.num_users, ds.num_items)
    for conv in model.convs:
        z_u, z_i = project(conv, users, cfg.factors), project(conv, items, cfg.factors)
        users = route(z_u, z_i, of_user, cfg.factors, cfg.iterations, cfg.tau)
        items = route(z_i, z_u, of_item, cfg.factors, cfg.iterations, cfg.tau)
    return users, items


@pytest.mark.parametrize(
    "options",
    [{}, {"layers": 0}, {"layers": 1, "iterations": 1}, {"layers": 3, "factors": 2, "tau": 0.5}, {"factors": 1}],
)
def test_disengcn_matches_the_reference(tiny, options):
    model = float64_model(tiny, "disengcn", **options)
    ref_u, ref_i = reference(model, tiny, model.cfg)
    tables = model.final_tables()
    assert tables.users.shape == ref_u.shape and tables.items.shape == ref_i.shape
    assert torch.allclose(tables.users, ref_u, atol=1e-6) and torch.allclose(tables.items, ref_i, atol=1e-6)


def test_default_is_two_layers_of_four_factors_routed_three_times(tiny):
    model = float64_model(tiny, "disengcn")
    assert (len(model.convs), model.cfg.factors, model.cfg.iterations, model.cfg.tau) == (2, 4, 3, 1.0)
    tables = model.final_tables()
    factors = tables.users.view(tiny.num_users, 4, -1)
    assert torch.allclose(factors.norm(dim=-1), torch.ones(tiny.num_users, 4, dtype=torch.float64))


@pytest.mark.parametrize(
    ("options", "message"),
    [({"factors": 5}, "positive divisor of --dim"), ({"iterations": 0}, "iterations must be >= 1"), ({"tau": 0.0}, "tau must be > 0")],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        resolve_options({"dataset": "synthetic-tiny", "model": "disengcn", **options})
