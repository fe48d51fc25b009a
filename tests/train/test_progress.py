"""The run display: a plain line per epoch when stderr is not a terminal (logs, batch
systems), a live bar on a terminal."""

import io

from click.testing import CliRunner

from ego_dgl.cli import main
from ego_dgl.train.checkpoint import TrainState
from ego_dgl.train.progress import epoch_line, resolve_display


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_display_follows_the_terminal():
    assert resolve_display("auto", Tty()) == "bar"
    assert resolve_display("auto", io.StringIO()) == "lines"
    assert resolve_display("off", Tty()) == "off"


def test_epoch_line_says_loss_validation_best_and_seconds():
    record = {"epoch": 3, "loss": 0.51234, "valid/recall@10": 0.25, "valid/ndcg@10": 0.3, "valid/recall@20": 0.4, "seconds": 2.345}
    state = TrainState(epoch=3, best_epoch=2, best_value=0.26, bad_epochs=1)
    line = epoch_line(record, state, "valid", 20, 50)
    assert line == "epoch 3/50 loss 0.5123 valid R@10 0.2500 N@10 0.3000 best valid R@10 0.2600 @2 (1/20 w/o gain) 2.3s"


def test_train_in_a_log_prints_one_line_per_epoch(tmp_path):
    result = CliRunner().invoke(main, ["train", "--dataset", "synthetic-tiny", "--epochs", "3", "--device", "cpu", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all(" loss " in line and " valid R@10 " in line and "best valid R@10" in line for line in lines)
