"""`egodgl dist-launch`: a DistDGL run on this machine, the local counterpart of DGL's
tools/launch.py (which starts the same processes over ssh on a cluster).

One simulated machine per partition, all on 127.0.0.1: the launcher writes an ip_config
with one line per partition, starts `servers` graph servers per partition and `trainers`
trainer processes, each running the same `egodgl train ... --dist` command with the
environment DGL's tools/launch.py sets (DGL_ROLE, DGL_NUM_SERVER, DGL_SERVER_ID, ...) and,
for the trainers, the torch.distributed variables its torch launcher sets (RANK,
WORLD_SIZE, ...), and EGODGL_DIST_ONE_HOST (see dist.graph). It waits for the trainers, stops every process when one fails or on
Ctrl-C, and returns the trainers' exit code. No sampler processes: sampling runs in the
trainers (DGL_NUM_SAMPLER=0).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ego_dgl.distributed.graph import ONE_HOST
from ego_dgl.distributed.partition import read_partitions
from ego_dgl.errors import ConfigError
from ego_dgl.system import check_process_count
from ego_dgl.train.parallel import free_port

HOST = "127.0.0.1"
IP_CONFIG = "ip_config.txt"
STOP_SECONDS = 10.0  # how long a stopped process may take before it is killed


@dataclass(frozen=True)
class LaunchConfig:
    """What to start: `servers` graph servers per partition and `trainers` trainers in all
    (a multiple of the partitions, as DGL's edge split needs)."""

    part_config: Path
    parts: int
    trainers: int = 1
    servers: int = 1

    def validate(self) -> LaunchConfig:
        if self.trainers < 1 or self.servers < 1:
            raise ConfigError("--trainers and --servers must be positive integers")
        if self.trainers % self.parts:
            raise ConfigError(f"--trainers {self.trainers} must be a multiple of the {self.parts} partitions (DGL splits the edges evenly "
                "by partition)")
        for flag, count in (("--trainers", self.trainers), ("--servers", self.servers)):  # --servers 10**6 never found its ports
            check_process_count(flag, count)
        return self


def ip_config_text(parts: int, servers: int) -> str:
    """One '127.0.0.1 PORT' line per partition; its servers listen on PORT, PORT+1, ..."""
    ports = []
    while len(ports) < parts:
        port = free_port()
        if all(abs(port - p) >= servers for p in ports):
            ports.append(port)
    return "".join(f"{HOST} {p}\n" for p in ports)


def common_env(cfg: LaunchConfig, ip_config: Path) -> dict[str, str]:
    """The DGL variables servers and trainers share."""
    return {"DGL_NUM_SAMPLER": "0", "DGL_NUM_CLIENT": str(cfg.trainers), "DGL_CONF_PATH": str(cfg.part_config),
            "DGL_IP_CONFIG": str(ip_config), "DGL_NUM_SERVER": str(cfg.servers), "DGL_GRAPH_FORMAT": "csc", ONE_HOST: "1"}


def server_env(cfg: LaunchConfig, ip_config: Path, server_id: int) -> dict[str, str]:
    """The environment of graph server `server_id` (one thread: it shares the machine)."""
    return {**common_env(cfg, ip_config), "DGL_ROLE": "server", "DGL_SERVER_ID": str(server_id), "DGL_KEEP_ALIVE": "0",
            "OMP_NUM_THREADS": "1"}


def trainer_env(cfg: LaunchConfig, ip_config: Path, rank: int, master_port: int) -> dict[str, str]:
    """The environment of trainer `rank`: DGL's client variables and torch.distributed's."""
    return {**common_env(cfg, ip_config), "DGL_DIST_MODE": "distributed", "DGL_ROLE": "client", "DGL_GROUP_ID": "0",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "RANK": str(rank), "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(cfg.trainers), "MASTER_ADDR": HOST, "MASTER_PORT": str(master_port)}


def train_command(args: list[str], part_config: Path) -> list[str]:
    """`egodgl ARGS` as this Python runs it, with --dist naming the partitions (added when
    missing; a resumed run has it in its config); only `train` can run distributed."""
    if not args or args[0] != "train":
        raise ConfigError("dist-launch runs a training command: egodgl dist-launch --parts-config FILE -- train [options]")
    if "--dist" not in args and "--resume" not in args:
        args = [*args, "--dist", str(part_config)]
    return [sys.executable, "-m", "ego_dgl.cli", *args]


def stop(procs: list[subprocess.Popen]) -> None:
    """Terminate the processes still running; kill those that do not end in time."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def supervise(servers: list[subprocess.Popen], trainers: list[subprocess.Popen]) -> int:
    """Wait for the trainers; the first failure (a trainer's or a server's) stops all.
    The trainers' exit code: 0, or the first non-zero one."""
    while True:
        codes = [p.poll() for p in trainers]
        failed = [c for c in codes if c not in (None, 0)] + [c for c in (p.poll() for p in servers) if c not in (None, 0)]
        if failed:
            stop(servers + trainers)
            return failed[0]
        if all(c == 0 for c in codes):
            stop(servers)  # they end when the trainers disconnect; this only bounds the wait
            return 0
        time.sleep(0.2)


def launch(part_config: str | Path, args: list[str], trainers: int = 1, servers: int = 1) -> int:
    """Run `egodgl ARGS` (a train command) as a DistDGL job on this machine; the trainers'
    exit code."""
    parts = read_partitions(part_config)
    cfg = LaunchConfig(parts.config, parts.parts, trainers, servers).validate()
    command = train_command(list(args), cfg.part_config)
    folder = Path(tempfile.mkdtemp(prefix="egodgl-dist-"))
    procs: list[subprocess.Popen] = []
    try:
        ip_config = folder / IP_CONFIG
        ip_config.write_text(ip_config_text(cfg.parts, cfg.servers))
        base = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")]))}
        server_procs = [subprocess.Popen(command, env={**base, **server_env(cfg, ip_config, i)}, stdout=subprocess.DEVNULL)
                        for i in range(cfg.parts * cfg.servers)]
        procs += server_procs
        port = free_port()
        trainer_procs = [subprocess.Popen(command, env={**base, **trainer_env(cfg, ip_config, r, port)}) for r in range(cfg.trainers)]
        procs += trainer_procs
        return supervise(server_procs, trainer_procs)
    finally:
        stop(procs)
        shutil.rmtree(folder, ignore_errors=True)
