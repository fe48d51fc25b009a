"""BM3 against a loop-by-loop float64 reference of its equations (encoder, predictor,
bootstrapped losses) on synthetic-tiny with a modality missing for some items; its
target dropout, its indifference to negatives, and bad options."""

from __future__ import annotations

import pytest
import torch
from mmrec_reference import content, cos, float64_model, layer_mean, linear, with_gaps

from ego_dgl.data import load_dataset
from ego_dgl.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

BATCH = (torch.tensor([0, 3, 3, 7]), torch.tensor([1, 2, 5, 9]), torch.tensor([4, 6, 8, 10]))


@pytest.fixture(scope="module")
def gappy():
    return with_gaps(load_dataset("synthetic-tiny"))


def encoder_reference(model, ds, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """h_u = LightGCN layer mean; h_i = the same + the item's ID row."""
    h_u, h_i = layer_mean(ds, model.users.detach(), model.items.detach(), layers)
    return h_u, h_i + model.items.detach()


@pytest.mark.parametrize("layers", [0, 2])
def test_tables_are_the_predictor_of_the_encoder(gappy, layers):
    model = float64_model(gappy, "bm3", dim=8, layers=layers)
    h_u, h_i = encoder_reference(model, gappy, layers)
    tables = model.final_tables()
    ref_u = torch.stack([linear(model.predictor, h_u[u]) for u in range(gappy.num_users)])
    ref_i = torch.stack([linear(model.predictor, h_i[i]) for i in range(gappy.num_items)])
    assert torch.allclose(tables.users, ref_u, atol=1e-8) and torch.allclose(tables.items, ref_i, atol=1e-8)


def loss_reference(model, ds, users, pos, reg: float) -> dict[str, float]:
    """Step 3 without dropout, one pair and one modality at a time; an item lacking a
    modality is left out of that modality's means."""
    h_u, h_i = encoder_reference(model, ds, model.cfg.layers)
    pred = model.predictor
    pairs = list(zip(users.tolist(), pos.tolist()))
    rec = sum(1 - cos(linear(pred, h_u[u]), h_i[i]) for u, i in pairs) / len(pairs)
    rec += sum(1 - cos(linear(pred, h_i[i]), h_u[u]) for u, i in pairs) / len(pairs)
    align = mask = 0.0
    for k, m in enumerate(ds.modalities):
        x = content(ds, m)
        kept = [i for _, i in pairs if ds.mask(m)[i]]
        h_m = {i: linear(model.project[k], x[i]) for i in kept}
        align += sum(1 - cos(linear(pred, h_m[i]), h_i[i]) for i in kept) / len(kept)
        mask += sum(1 - cos(linear(pred, h_m[i]), h_m[i]) for i in kept) / len(kept)
    reg_term = reg * (float(h_u.pow(2).sum().sqrt()) + float(h_i.pow(2).sum().sqrt())) / ds.num_items
    return {"rec": rec, "align": align, "mask": mask, "reg": reg_term, "total": rec + model.cfg.cl_weight * (align + mask) + reg_term}


def test_loss_matches_the_reference(gappy):
    model = float64_model(gappy, "bm3", dim=8, layers=2, cl_weight=1.5).eval()
    users, pos, neg = BATCH
    assert not gappy.mask(gappy.modalities[0])[3 * 3]  # item 9 lacks the first modality
    loss, parts = model.loss(users, pos, neg, 0.1)
    ref = loss_reference(model, gappy, users, pos, 0.1)
    for key in ("rec", "align", "mask", "reg"):
        assert parts[key].item() == pytest.approx(ref[key], abs=1e-8), key
    assert loss.item() == pytest.approx(ref["total"], abs=1e-8)


def test_negatives_are_ignored_and_dropout_acts_in_training_only(gappy):
    model = float64_model(gappy, "bm3", dim=8)
    users, pos, neg = BATCH
    model.eval()
    clean = model.loss(users, pos, neg, 0.1)[0].item()
    assert model.loss(users, pos, torch.flip(neg, [0]) + 20, 0.1)[0].item() == clean
    model.train()
    assert model.loss(users, pos, neg, 0.1)[0].item() != pytest.approx(clean, abs=1e-6)
    model.cfg.dropout = 0.0
    assert model.loss(users, pos, neg, 0.1)[0].item() == pytest.approx(clean, abs=1e-12)


def test_targets_carry_no_gradient(gappy):
    """Only online views are trained: with the predictor frozen at the identity, the
    gradient of L_rec reaches the user table only through the online user view."""
    model = float64_model(gappy, "bm3", dim=8, layers=0, cl_weight=0.0).eval()
    with torch.no_grad():
        model.predictor.weight.copy_(torch.eye(8, dtype=torch.float64))
        model.predictor.bias.zero_()
    users, pos, neg = torch.tensor([0]), torch.tensor([1]), torch.tensor([2])
    model.loss(users, pos, neg, 0.0)[0].backward()
    u, i = model.users.detach()[0], model.items.detach()[1] * 2  # h_i = e_i + e_i at 0 layers
    expected = -(i / (u.norm() * i.norm()) - (u @ i) * u / (u.norm() ** 3 * i.norm()))
    assert torch.allclose(model.users.grad[0], expected, atol=1e-10)


@pytest.mark.parametrize(
    "given, message",
    [({"dropout": 1.0}, "dropout must lie"), ({"layers": -1}, "layers >= 0"), ({"cl_weight": -1.0}, "cl_weight")],
)
def test_bad_options_are_refused(given, message):
    with pytest.raises(ConfigError, match=message):
        float64_model(load_dataset("synthetic-tiny"), "bm3", **given)
