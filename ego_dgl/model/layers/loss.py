"""BPR loss and the regulariser of docs/egogcn.md ("Prediction, loss and regulariser", Eq. 14)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bpr(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    """Mean over the batch of -log sigmoid(y_ui - y_uj)."""
    return F.softplus(neg_scores - pos_scores).mean()


def regulariser(user_rows: list[Tensor], item_rows: list[Tensor]) -> Tensor:
    """Sum over tables of the mean squared entry of the batch's raw rows.

    docs/egogcn.md [impl], as the authors' code: mean(e_id[u]^2 + e_id[i]^2) + sum over m of
    mean(u_m(0)[u]^2), where the batch's items are its positives and negatives (each user
    row appears once per pair, so the users' term is the mean over the batch's users and
    the items' term the mean over positives and negatives together)."""
    return torch.stack([rows.pow(2).mean() for rows in user_rows + item_rows]).sum()


def pair_regulariser(user_rows: list[Tensor], item_rows: list[Tensor]) -> Tensor:
    """LightGCN's authors' convention: every squared entry of the batch's raw rows (its B
    users, and its positives and negatives together) summed and divided by the same 2·B·D,
    so a user row weighs what an item row does (their code divides by 2B; D as in
    `regulariser`, to keep `--reg` on one scale across the models)."""
    batch, width = user_rows[0].shape  # the batch's B user rows are always among them
    return torch.stack([r.pow(2).sum() for r in user_rows + item_rows]).sum() / (2 * batch * width)
