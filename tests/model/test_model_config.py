"""What every model's config declares to the shared code (model/config.py): the options it
ignores as set, and the widths and depths the memory estimate counts."""

from ego_dgl.model.baselines.lightgcn import LightGCNConfig
from ego_dgl.model.baselines.pop import PopConfig
from ego_dgl.model.config import Footprint
from ego_dgl.model.egogcn.config import ModelConfig
from ego_dgl.model.registry import MODELS, config_type
from ego_dgl.train.budget import training_bytes


def test_only_egogcn_variants_ignore_options():
    assert {name: config_type(name)().ignored_options() for name in MODELS if name != "egogcn"} == {n: {} for n in MODELS if n != "egogcn"}
    assert set(ModelConfig(mode="hard").ignored_options()) == {"gate"}
    assert set(ModelConfig(mode="soft").ignored_options()) == {"eps", "threshold"}
    assert set(ModelConfig(fusion="gm").ignored_options()) == {"mode", "eps", "threshold", "gate"}


def test_footprints_name_each_models_depths():
    assert ModelConfig(dim=8, layers_mm=3, layers_id=1, branches="id").footprint() == Footprint(8, 128, False, 3, 1)
    assert LightGCNConfig(dim=16, content=False).footprint() == Footprint(16, 128, False, 3, 3)
    assert PopConfig().footprint() is None


def test_memory_estimate_grows_with_the_declared_depth(tiny):
    assert training_bytes(tiny, PopConfig()) == 0
    assert training_bytes(tiny, LightGCNConfig(layers=1)) < training_bytes(tiny, LightGCNConfig(layers=4))
    assert training_bytes(tiny, ModelConfig(layers_id=1)) < training_bytes(tiny, ModelConfig(layers_id=4))
