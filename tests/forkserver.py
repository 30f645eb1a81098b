"""`python recipes/<stage>.py args`, minus the seconds of imports: a recipe run in a fork of a warm interpreter.

A fresh interpreter spends seconds of CPU importing torch, transformers, peft and TRL before a recipe reads
its first argument, and a launch of two ranks pays that twice more, plus the launcher's own. The server (this
file run as a script) imports those libraries once, computes nothing, and forks a child per command, or per
rank of a launch: the child takes the command's environment, working directory and output files, runs the
script as `__main__` with the command's arguments, runs the exit handlers and exits with the script's status,
as the same command in a fresh interpreter would (a `sitecustomize.py` on a PYTHONPATH of its own included).
A launch's ranks take the environment `accelerate launch` would give each one (`launch_ranks`, from
accelerate's own code): when one fails, the others are stopped, as torchrun stops them. What a library reads
from the environment while it is imported is the server's.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path


class ForkServer:
    """One warm interpreter serving one command at a time (a caller on another thread waits its turn); `also`
    names modules it imports beyond every recipe's (deepspeed)."""

    def __init__(self, env: dict, also: Sequence[str] = ()) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, *also],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lock = threading.Lock()

    def run(
        self,
        script: str,
        args: Sequence[str],
        cwd: Path,
        env: dict | None = None,
        ranks: Sequence[dict] = ({},),
        timeout_s: float = 600,
        module: bool = False,
    ) -> subprocess.CompletedProcess:
        """The script's run under `env` (the server's if None), once per rank with that rank's variables added;
        the ranks' output, rank 0's first."""
        return self.start(script, args, cwd, env, ranks, timeout_s, module).wait()

    def start(
        self,
        script: str,
        args: Sequence[str],
        cwd: Path,
        env: dict | None = None,
        ranks: Sequence[dict] = ({},),
        timeout_s: float = 600,
        module: bool = False,
    ) -> Running:
        """`run`, returning once the ranks are forked (`.pids`); `.wait()` for the result. With `module`, the
        script is a module's name, run as `python -m` runs it."""
        self.lock.acquire()
        scratch = tempfile.TemporaryDirectory()
        job = {"script": script, "module": module, "args": [str(a) for a in args], "cwd": str(cwd), "env": env}
        job |= {"ranks": list(ranks), "output": str(Path(scratch.name) / "output"), "timeout_s": timeout_s}
        try:
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
            return Running(self, job, scratch, self.reply("pids"))
        except BaseException:
            scratch.cleanup()
            self.lock.release()
            raise

    def reply(self, key: str):
        """The server's next answer `{key: value}`; anything else on its stdout is not ours."""
        line = self.process.stdout.readline()
        while line and not line.startswith(f'{{"{key}"'):
            line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the fork server died; run the command in a fresh interpreter to see why")
        return json.loads(line)[key]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


class Running:
    """A command the server has forked: its ranks' `pids`, and `wait()` for its end."""

    def __init__(self, server: ForkServer, job: dict, scratch: tempfile.TemporaryDirectory, pids: list[int]):
        self.server, self.job, self.scratch, self.pids = server, job, scratch, pids

    def wait(self) -> subprocess.CompletedProcess:
        try:
            returncode = self.server.reply("returncode")
            files = [[f"{self.job['output']}.{rank}.{fd}" for rank in range(len(self.pids))] for fd in (1, 2)]
            out, err = ("".join(Path(f).read_text() for f in by_rank) for by_rank in files)
            return subprocess.CompletedProcess([self.job["script"], *self.job["args"]], returncode, out, err)
        finally:
            self.scratch.cleanup()
            self.server.lock.release()


def launch_ranks(command: Sequence[str], master_port: int) -> tuple[dict, list[dict]]:
    """For `accelerate launch <options>` (the command up to its script): the environment the launcher gives
    every rank, computed from os.environ by accelerate's own code as its torchrun and DeepSpeed launchers
    compute it, and what torchrun adds for each rank."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    options = launch_command_parser().parse_args([*command[2:], "script.py"])
    args, defaults, precision_from_config = _validate_launch_command(options)
    if args.num_machines != 1:
        raise ValueError("a forked launch stands in for one machine only; several go through `accelerate launch`")
    if args.use_deepspeed:
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if precision_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        env = prepare_deepspeed_cmd_env(args)[1]
    else:
        env = prepare_multi_gpu_env(args)
    count = args.num_processes
    shared = {"WORLD_SIZE": str(count), "LOCAL_WORLD_SIZE": str(count), "GROUP_RANK": "0", "GROUP_WORLD_SIZE": "1"}
    shared |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(master_port)}
    return env, [{**shared, "RANK": str(rank), "LOCAL_RANK": str(rank)} for rank in range(count)]


def _warm_up(also: Sequence[str]) -> None:
    """Import what every recipe imports; run nothing (a fork must not inherit a running thread pool)."""
    import accelerate  # noqa: F401
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401
    from trl import DPOTrainer, GRPOTrainer, RewardTrainer, RLOOTrainer, SFTTrainer  # noqa: F401

    from rlhf_recipes.training.ppo import PPOTrainer  # noqa: F401

    for module in also:
        importlib.import_module(module)


def _start_up_with_pythonpath() -> None:
    """What a fresh interpreter makes of a PYTHONPATH the server did not start with: its folders on sys.path,
    and the first `sitecustomize.py` among them run (site.py runs the first one on the path)."""
    new = [f for f in os.environ.get("PYTHONPATH", "").split(os.pathsep) if f and f not in sys.path]
    sys.path[1:1] = new
    hooks = [Path(f, "sitecustomize.py") for f in new if Path(f, "sitecustomize.py").is_file()]
    if hooks:
        runpy.run_path(str(hooks[0]), run_name="sitecustomize")


def _child(job: dict, rank: int) -> None:
    code = 1
    try:
        if job["env"] is not None:
            os.environ.clear()
            os.environ.update(job["env"])
        os.environ.update(job["ranks"][rank])
        _start_up_with_pythonpath()
        os.chdir(job["cwd"])
        for fd in (1, 2):
            os.dup2(os.open(f"{job['output']}.{rank}.{fd}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.argv = [job["script"], *job["args"]]
        if job["module"]:
            sys.path[0] = os.getcwd()  # as `python -m module` sets it
            runpy.run_module(job["script"], run_name="__main__", alter_sys=True)
        else:
            script = os.path.abspath(job["script"])
            sys.path[0] = os.path.dirname(script)  # as `python script` sets it
            runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run(job: dict) -> int:
    """Fork every rank; the first non-zero status stops the others (they would wait for it) and is returned."""
    running = {}
    for rank in range(len(job["ranks"])):
        pid = os.fork()
        if pid == 0:
            _child(job, rank)
        running[pid] = rank
    print(json.dumps({"pids": list(running)}), flush=True)
    code, deadline = 0, time.monotonic() + job["timeout_s"]
    while running:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            if time.monotonic() > deadline:
                code = code or -signal.SIGKILL
                for other in running:
                    os.kill(other, signal.SIGKILL)
            time.sleep(0.05)
            continue
        running.pop(pid)
        returncode = os.waitstatus_to_exitcode(status)
        if returncode != 0 and code == 0:
            code = returncode
            for other in running:
                os.kill(other, signal.SIGKILL)
    return code


def serve(also: Sequence[str]) -> None:
    _warm_up(also)
    for line in sys.stdin:
        print(json.dumps({"returncode": _run(json.loads(line))}), flush=True)


if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parents[1] / "recipes")
    serve(sys.argv[1:])
