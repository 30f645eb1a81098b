"""Shared fixtures: one tiny world, tokenizer and base model, built once per test session for real."""

import fcntl
import functools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach a hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `make test` runs workers side by side: each takes its share of the cores, fixed (RLHF_RECIPES_THREADS), so a
# run and its resumed twin compute on as many threads whatever else runs (training/cores.py)
_share = max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
os.environ["OMP_NUM_THREADS"] = os.environ["RLHF_RECIPES_THREADS"] = str(_share)  # the commands the tests start

from forkserver import ForkServer, launch_ranks  # noqa: E402

# torch and the package are imported where they are used: under `make test` this file is also imported by
# pytest-xdist's controller, which runs no test (~8 s of CPU while the workers start)
ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "tiny"


@pytest.fixture(scope="session", autouse=True)
def threads_of_this_worker():
    """Its share of the cores for what the tests train in this process."""
    import torch

    torch.set_num_threads(_share)


def script(name: str):
    """`recipes/<name>.py`'s entry point, `main(argv) -> result`: the script as `python recipes/<name>.py` runs it,
    in this interpreter (errors raise RecipeError instead of exiting), never imported as a module."""
    from rlhf_recipes.training.config import declared

    return declared(ROOT / "recipes" / f"{name}.py")


def stage(name: str):
    """The Stage class a training script declares: `stage("sft").from_argv(argv)` -> (stage, output options)."""
    from rlhf_recipes.stages.runner import stage_of

    return stage_of(ROOT / "recipes" / f"{name}.py")


# A world small enough to build in a second, with every split non-empty.
SMALL_WORLD = [
    "--num_cities",
    "12",
    "--pretrain_docs",
    "600",
    "--pretrain_test_fraction",
    "0.05",
    "--sft_train",
    "64",
    "--sft_test",
    "16",
    "--comparison_prompts",
    "16",
    "--preference_train",
    "800",
    "--preference_test",
    "100",
    "--rl_prompts",
    "32",
    "--eval_harmful",
    "4",
    "--eval_benign",
    "4",
    "--num_unknown_cities",
    "8",
    "--unknown_fraction",  # a few: the tiny test models learn to answer and stop from 64 demonstrations
    "0.05",
    "--eval_unknown",
    "4",
]


def world_args(out: Path, *extra: str) -> list[str]:
    return ["--config", str(TINY / "data.yaml"), "--output_dir", str(out), *SMALL_WORLD, *extra]


def built_once(tmp_path_factory, name: str, build) -> tuple[Path, object]:
    """`(out, build(out))` for a session fixture, built once per run: `make test`'s first worker to ask builds it in
    a folder the workers share (the parent of each one's base temp folder), the other waits and reads it back.
    The value goes through JSON either way, so both see the same."""
    base = tmp_path_factory.getbasetemp()
    out = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once" / name / name
    out.parent.mkdir(parents=True, exist_ok=True)
    value = out.parent / "value.json"
    with open(out.parent.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the builder's dependencies were built before: no lock waits on another
        if not value.exists():
            value.write_text(json.dumps(build(out)))
        return out, json.loads(value.read_text())


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory) -> Path:
    return built_once(tmp_path_factory, "world", lambda out: script("data")(world_args(out)))[0]


@pytest.fixture(scope="session")
def tokenizer_dir(world_dir, tmp_path_factory) -> Path:
    return built_once(tmp_path_factory, "tokenizer", lambda out: script("tokenizer")(tokenizer_args(world_dir, out)))[
        0
    ]


def tokenizer_args(world_dir: Path, out: Path) -> list[str]:
    return [
        "--config",
        str(TINY / "tokenizer.yaml"),
        "--dataset_name",
        str(world_dir / "pretrain"),
        "--vocab_size",
        "512",
        "--output_dir",
        str(out),
    ]


def pretrain_args(world_dir: Path, tokenizer_dir: Path, out: Path, *extra: str) -> list[str]:
    """The tiny recipe's own YAML, shrunk to a model and a run that take seconds."""
    return [
        "--config",
        str(TINY / "pretrain.yaml"),
        "--dataset_name",
        str(world_dir / "pretrain"),
        "--tokenizer_name_or_path",
        str(tokenizer_dir),
        "--world_file",
        str(world_dir / "world.json"),
        "--output_dir",
        str(out),
        "--n_layer",
        "2",
        "--n_embd",
        "64",
        "--n_head",
        "2",
        "--context_length",
        "128",
        "--max_steps",
        "60",
        "--logging_steps",
        "5",
        "--warmup_steps",
        "5",
        "--learning_rate",
        "2e-3",
        "--muon_learning_rate",
        "4e-3",
        "--save_strategy",
        "no",
        *extra,
    ]


@pytest.fixture(scope="session")
def pretrained(world_dir, tokenizer_dir, tmp_path_factory) -> tuple[Path, dict]:
    return built_once(
        tmp_path_factory, "pretrain", lambda out: script("pretrain")(pretrain_args(world_dir, tokenizer_dir, out))
    )


def run_cli(script: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run a recipe script the way a user does (`python script args`), forked from a warm interpreter:
    its output and exit status are the script's own (forkserver.py)."""
    return warm_server().run(script, args, cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(hw: str, stage: str, *args: str, processes: int | None = None) -> list[str]:
    """What `make <stage>` runs: on one CPU process `python -m rlhf_recipes.stages.command`, which runs the stage
    in its own process; else the launch it builds (`stage_command`), on a port of its own. `args` start with
    the recipe's `--config recipes/<model>/<stage>.yaml` and override it."""
    from rlhf_recipes.stages.command import stage_command
    from rlhf_recipes.stages.in_process import in_one_process

    model = Path(args[1]).parent.name
    assert args[0] == "--config" and Path(args[1]).resolve() == (ROOT / "recipes" / model / f"{stage}.yaml").resolve()
    if in_one_process(hw, processes):
        where = ["--model", model, "--hw", hw]
        return [sys.executable, "-m", "rlhf_recipes.stages.command", stage, *where, "--", *args[2:]]
    command = stage_command(model, stage, hw, processes, args[2:])
    command[2:2] = ["--main_process_port", str(free_port())]  # two launches at once must not share a port
    return command


@functools.cache
def warm_server() -> ForkServer:
    """This test worker's warm interpreter (forkserver.py), DeepSpeed imported too: the ranks of a launch, the
    bad-input cases, `run_cli`'s scripts and the resumed stages' killed runs are forked from it."""
    return ForkServer({**os.environ, **LAUNCH_ENV}, also=["deepspeed"])


LAUNCH_ENV = {"PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def launch(
    hw: str, stage: str, *args: str, processes: int | None = None, env: dict | None = None, forked: bool = True
) -> subprocess.CompletedProcess:
    """Run the stage as `make <stage> HW=<hw>` runs it (on several processes: `accelerate launch` with
    accelerate_configs/<hw>.yaml), with `env` added to the environment. Several ranks are `forked` from a warm
    interpreter under the environment the launch gives each (forkserver.py) unless `forked=False`: a launch
    of two ranks costs three interpreters' imports, and what the launcher itself does is tested once, in
    test_distributed.py and test_multinode.py."""
    from rlhf_recipes.stages.in_process import in_one_process

    env = {**os.environ, **LAUNCH_ENV, **(env or {})}
    command = launch_command(hw, stage, *args, processes=processes)
    if not forked or in_one_process(hw, processes):
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    port = int(command[command.index("--main_process_port") + 1])
    script = next(i for i, arg in enumerate(command) if arg.endswith(".py"))
    with environment(env):
        launch_env, ranks = launch_ranks(command[:script], port)
    return warm_server().run(command[script], command[script + 1 :], ROOT, env=launch_env, ranks=ranks)


def pytest_sessionfinish(session, exitstatus):
    if warm_server.cache_info().currsize:
        warm_server().close()


@contextmanager
def environment(env: dict):
    """os.environ replaced by `env` for a while (accelerate computes a launch's environment from it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def sft_args(world_dir: Path, model_dir: Path, out: Path, *extra: str) -> list[str]:
    """The tiny recipe's SFT YAML on the small world, shrunk to seconds."""
    return [
        "--config",
        str(TINY / "sft.yaml"),
        "--model_name_or_path",
        str(model_dir),
        "--dataset_name",
        str(world_dir / "sft"),
        "--replay_dataset",
        str(world_dir / "pretrain"),
        "--eval_prompts",
        str(world_dir / "eval_prompts"),
        "--world_file",
        str(world_dir / "world.json"),
        "--output_dir",
        str(out),
        "--max_steps",
        "80",
        "--learning_rate",
        "3e-3",
        "--logging_steps",
        "5",
        "--per_device_train_batch_size",
        "8",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--num_samples_to_print",
        "2",
        *extra,
    ]


@pytest.fixture(scope="session")
def sft_model(world_dir, pretrained, tmp_path_factory) -> tuple[Path, dict]:
    return built_once(tmp_path_factory, "sft", lambda out: script("sft")(sft_args(world_dir, pretrained[0], out)))


@pytest.fixture(scope="session")
def comparisons(world_dir, sft_model, tmp_path_factory) -> tuple[Path, dict]:
    return built_once(
        tmp_path_factory, "compare", lambda out: script("compare")(compare_args(world_dir, sft_model, out))
    )


def compare_args(world_dir: Path, sft_model, out: Path) -> list[str]:
    return [
        "--config",
        str(TINY / "compare.yaml"),
        "--model_name_or_path",
        str(sft_model[0]),
        "--dataset_name",
        str(world_dir / "comparison_prompts"),
        "--world_file",
        str(world_dir / "world.json"),
        "--offline_pairs",
        str(world_dir / "preferences"),
        "--num_offline_pairs",
        "50",
        "--test_fraction",
        "0.25",
        "--max_new_tokens",
        "24",
        "--output_dir",
        str(out),
    ]


def reward_args(model_dir: Path, pairs_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--config",
        str(TINY / "reward.yaml"),
        "--model_name_or_path",
        str(model_dir),
        "--dataset_name",
        str(pairs_dir),
        "--heldout_pairs",
        "",
        "--output_dir",
        str(out),
        "--per_device_train_batch_size",
        "8",
        "--logging_steps",
        "5",
        *extra,
    ]


@pytest.fixture(scope="session")
def reward_model(world_dir, sft_model, tmp_path_factory) -> tuple[Path, dict]:
    """From the tiny SFT model, as in the pipeline, on a few hundred easy offline pairs and their test split."""
    extra = ("--num_train_epochs", "2", "--learning_rate", "1e-3")
    return built_once(
        tmp_path_factory,
        "reward",
        lambda out: script("reward")(reward_args(sft_model[0], world_dir / "preferences", out, *extra)),
    )


def ppo_args(world_dir: Path, sft_dir: Path, reward_dir: Path, out: Path, *extra: str) -> list[str]:
    """The tiny recipe's PPO YAML on the small world: two updates of 8 episodes."""
    return [
        "--config",
        str(TINY / "ppo.yaml"),
        "--sft_model_path",
        str(sft_dir),
        "--reward_model_path",
        str(reward_dir),
        "--dataset_name",
        str(world_dir / "rl_prompts"),
        "--eval_prompts",
        str(world_dir / "eval_prompts"),
        "--world_file",
        str(world_dir / "world.json"),
        "--output_dir",
        str(out),
        "--total_episodes",
        "16",
        "--per_device_train_batch_size",
        "8",
        "--num_ppo_epochs",
        "1",
        "--response_length",
        "16",
        "--eval_max_new_tokens",
        "16",
        "--num_eval_prompts",
        "4",
        *extra,
    ]


@pytest.fixture(scope="session")
def ppo_model(world_dir, sft_model, reward_model, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("outputs") / "ppo"
    return out, script("ppo")(ppo_args(world_dir, sft_model[0], reward_model[0], out))


def online_args(method: str, world_dir: Path, sft_dir: Path, reward_dir: Path, out: Path, *extra: str) -> list[str]:
    """The tiny recipe's RLOO or GRPO YAML on the small world: two steps of 4 prompts x 2 answers."""
    return [
        "--config",
        str(TINY / f"{method}.yaml"),
        "--model_name_or_path",
        str(sft_dir),
        "--reward_model_path",
        str(reward_dir),
        "--dataset_name",
        str(world_dir / "rl_prompts"),
        "--eval_prompts",
        str(world_dir / "eval_prompts"),
        "--world_file",
        str(world_dir / "world.json"),
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "8",
        "--num_generations",
        "2",
        "--max_completion_length",
        "16",
        "--eval_max_new_tokens",
        "16",
        "--num_eval_prompts",
        "4",
        "--save_strategy",
        "no",
        "--snapshot_steps",
        "1",
        *extra,
    ]


def dpo_args(world_dir: Path, sft_dir: Path, pairs_dir: Path, out: Path, *extra: str) -> list[str]:
    """The tiny recipe's DPO YAML on a few preference pairs: a few steps."""
    return [
        "--config",
        str(TINY / "dpo.yaml"),
        "--model_name_or_path",
        str(sft_dir),
        "--dataset_name",
        str(pairs_dir),
        "--eval_prompts",
        str(world_dir / "eval_prompts"),
        "--world_file",
        str(world_dir / "world.json"),
        "--output_dir",
        str(out),
        "--eval_max_new_tokens",
        "16",
        "--per_device_train_batch_size",
        "8",
        "--save_strategy",
        "no",
        *extra,
    ]


@pytest.fixture(scope="session")
def dpo_model(world_dir, sft_model, comparisons, tmp_path_factory) -> tuple[Path, dict]:
    """DPO from the tiny SFT model on the compared pairs: 12 steps of 8 pairs."""
    out = tmp_path_factory.mktemp("outputs") / "dpo"
    extra = ("--max_steps", "12", "--learning_rate", "1e-3", "--logging_steps", "2", "--snapshot_steps", "6")
    return out, script("dpo")(dpo_args(world_dir, sft_model[0], comparisons[0], out, *extra))


def online_model(method: str, world_dir: Path, sft_model, reward_model, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("outputs") / method
    return out, script("online")(online_args(method, world_dir, sft_model[0], reward_model[0], out))


@pytest.fixture(scope="session")
def rloo_model(world_dir, sft_model, reward_model, tmp_path_factory) -> tuple[Path, dict]:
    return online_model("rloo", world_dir, sft_model, reward_model, tmp_path_factory)


@pytest.fixture(scope="session")
def grpo_model(world_dir, sft_model, reward_model, tmp_path_factory) -> tuple[Path, dict]:
    return online_model("grpo", world_dir, sft_model, reward_model, tmp_path_factory)


@pytest.fixture(scope="session")
def outputs(world_dir, pretrained, sft_model, reward_model, tmp_path_factory) -> Path:
    """An outputs folder as `make all` leaves it, with the stages the test session trained (no PPO)."""
    out = tmp_path_factory.mktemp("talk") / "outputs"
    out.mkdir()
    for name, (path, _) in {"pretrain": pretrained, "sft": sft_model, "reward": reward_model}.items():
        (out / name).symlink_to(path)
    return out


@pytest.fixture(scope="session")
def server(outputs):
    """`make serve` on `outputs`, on a free loopback port; its URL once the page answers. The page's tests and
    the OpenAI API's share it."""
    port = free_port()
    command = [sys.executable, "recipes/serve.py", "--config", str(TINY / "serve.yaml")]
    command += ["--outputs_dir", str(outputs), "--port", str(port), "--max_prompt_chars", "300"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url + "/api/stages", timeout=60).close()
            break
        except OSError:
            time.sleep(0.5)
    if process.poll() is not None:
        pytest.fail("the server died at start:\n" + process.stdout.read())
    yield url
    process.terminate()
    process.wait(timeout=30)


# The longest files start first, so that under `make test`'s workers none is left running alone at the end.
LONGEST_FIRST = [
    "test_deepspeed.py",
    "test_multinode.py",
    "test_talk.py",
    "test_resume.py",
    "test_distributed.py",
    "test_real_recipes.py",
    "test_bad_input.py",
    "test_eval_harness.py",
    "test_peft.py",
    "test_bilingual.py",
    "test_report.py",
    "test_labeler_zh.py",
    "test_pipeline.py",
    "test_own_data_pipeline.py",
]


# Files whose tests share a session fixture's process: under `make test` (`--dist loadfile`) they go to one
# worker, so that only one of them starts it.
SHARED_WORKER = {"test_openai_serving.py": "test_talk.py"}  # one `make serve` (the `server` fixture)


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFiles(LoadFileScheduling):
        """pytest-xdist's per-file scheduling, with SHARED_WORKER's files as one."""

        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            shared = SHARED_WORKER.get(Path(path).name)
            return str(Path(path).with_name(shared)) if shared else path

    return SharedFiles(config, log)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
