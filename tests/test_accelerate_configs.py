"""configs/accelerate/*.yaml parse with accelerate's own loader and start the launcher they are meant to.

Nothing is launched: accelerate's launchers are replaced by a recorder, so the test runs on a CPU. It shows
what `accelerate launch --config_file configs/accelerate/<name>.yaml -m reinforce_edu.train ...` would start
(launcher, process count, the environment the processes read); the GPU runs themselves are not tested here.
"""

from pathlib import Path

import pytest

launch = pytest.importorskip("accelerate.commands.launch")
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file  # noqa: E402
from accelerate.utils import DistributedType, prepare_multi_gpu_env  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
EXPECTED = {  # file: (distributed_type, processes, launcher)
    "single_gpu.yaml": (DistributedType.NO, 1, "simple_launcher"),
    "multi_gpu.yaml": (DistributedType.MULTI_GPU, 2, "multi_gpu_launcher"),
    "fsdp_zero2.yaml": (DistributedType.FSDP, 2, "multi_gpu_launcher"),
    "fsdp.yaml": (DistributedType.FSDP, 2, "multi_gpu_launcher"),
}


def test_every_config_is_listed_and_documented():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)
    readme = (CONFIGS / "README.md").read_text()
    assert all(name in readme for name in EXPECTED)
    assert "not yet been run on a GPU" in readme  # said plainly until someone has


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_parses_with_the_expected_distributed_type(name):
    config = load_config_from_file(str(CONFIGS / name))
    distributed, processes, _ = EXPECTED[name]
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == distributed and config.num_processes == processes
    assert config.mixed_precision == "no"  # precision is the trainer's --dtype; the two must not stack


def _launch(monkeypatch, name: str, *extra: str):
    """Run `accelerate launch --config_file <name> <extra> -m reinforce_edu.train --steps 1` up to its launcher."""
    seen = {}
    for launcher in ("simple_launcher", "multi_gpu_launcher", "tpu_launcher"):
        monkeypatch.setattr(launch, launcher, lambda args, launcher=launcher: seen.update(launcher=launcher, args=args))
    args = launch.launch_command_parser().parse_args(
        ["--config_file", str(CONFIGS / name), *extra, "-m", "reinforce_edu.train", "--steps", "1"])
    launch.launch_command(args)
    return seen["launcher"], seen["args"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_launch_picks_the_launcher_and_runs_the_module(monkeypatch, name):
    launcher, args = _launch(monkeypatch, name)
    assert launcher == EXPECTED[name][2]
    assert args.num_processes == EXPECTED[name][1]
    assert args.module and args.training_script == "reinforce_edu.train" and args.training_script_args == ["--steps", "1"]


def test_the_gpu_count_is_overridden_on_the_command_line(monkeypatch):
    _, args = _launch(monkeypatch, "multi_gpu.yaml", "--num_processes", "8")
    assert args.num_processes == 8 and prepare_multi_gpu_env(args) is not None and args.nproc_per_node == "8"


def test_fsdp_zero2_config_keeps_the_gathered_weights_until_backward(monkeypatch):
    env = prepare_multi_gpu_env(_launch(monkeypatch, "fsdp_zero2.yaml")[1])
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_RESHARD_AFTER_FORWARD"] == "false"  # SHARD_GRAD_OP: ZeRO-2's partitioning (llm.sharding)
    assert env["FSDP_OFFLOAD_PARAMS"] == "false"


def test_fsdp_config_asks_for_fsdp2_sharded_per_block(monkeypatch):
    _, args = _launch(monkeypatch, "fsdp.yaml")
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP" and env["FSDP_RESHARD_AFTER_FORWARD"] == "true"
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    plain = prepare_multi_gpu_env(_launch(monkeypatch, "multi_gpu.yaml")[1])
    assert "ACCELERATE_USE_FSDP" not in plain and "ACCELERATE_USE_DEEPSPEED" not in plain  # plain DDP
