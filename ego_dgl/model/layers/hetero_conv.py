"""Baselines built from DGL's own layers (dgl.nn): one `dgl.nn.HeteroGraphConv` per layer
on the user/item training heterograph (`graphs.structure_graph`), so each edge type
(CLICKS user->item, CLICKED_BY item->user) has its own convolution, fed the pair
(source features, destination features). The inputs are the early-fused ones
(`early_fusion`); the final representation is the last layer's output.

The DGL graph is not a buffer: `_apply` moves it with the model (`.to(device)`); `.double()`
leaves it as it is, since the structure holds no floating-point data. The PyPI DGL is
CPU-only, so moving such a model to a device DGL cannot use is a ConfigError.
"""

from __future__ import annotations

from torch import Tensor, nn

from ego_dgl._dgl import dgl
from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.graph.backends import _dgl_runs_on
from ego_dgl.graph.heterograph import ITEM, USER, structure_graph
from ego_dgl.model.base import Recommender, Tables
from ego_dgl.model.layers.early_fusion import BaselineConfig, EarlyFusionInputs


class HeteroConvRecommender(Recommender):
    """Early-fused inputs through `self.convs` (one HeteroGraphConv per layer); a subclass
    builds the convolutions and says what follows each layer (`after_layer`)."""

    def __init__(self, ds: Dataset, cfg: BaselineConfig, convs: list[dgl.nn.HeteroGraphConv]):
        super().__init__()
        self.cfg = cfg
        self.graph = structure_graph(ds)
        self.inputs = EarlyFusionInputs(ds, cfg)
        self.cold_start = self.inputs.cold_start
        self.convs = nn.ModuleList(convs)

    @property
    def backend(self) -> str:
        return "dgl"

    def _apply(self, fn, recurse: bool = True):
        """Moves the DGL graph along with the parameters (see the module docstring)."""
        super()._apply(fn, recurse)
        device = self.device
        if self.graph.device != device:
            if not _dgl_runs_on(str(device)):
                raise ConfigError(
                    f"--model {self.cfg.name} runs DGL's own layers and the installed DGL cannot run on {device} "
                    "(the PyPI DGL is CPU-only): use --device cpu"
                )
            self.graph = self.graph.to(device)
        return self

    def after_layer(self, k: int, h: Tensor) -> Tensor:
        """What follows layer k (0-based) for one node type's output."""
        raise NotImplementedError

    def input_tables(self) -> Tables:
        return Tables(*self.inputs())

    def propagate(self) -> Tables:
        users, items = self.inputs()
        for k, conv in enumerate(self.convs):
            out = conv(self.graph, {USER: users, ITEM: items})
            users, items = self.after_layer(k, out[USER]), self.after_layer(k, out[ITEM])
        return Tables(users, items)

    def reg_rows(self, users: Tensor, items: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        return self.inputs.reg_rows(users, items)
