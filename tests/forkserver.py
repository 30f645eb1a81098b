"""`python recipes/<stage>.py args`, minus the ~9 s of imports: a recipe run in a fork of a warm interpreter.

A fresh interpreter spends ~9 s of CPU importing torch, transformers, peft and TRL before a recipe reads
its first argument, and most bad-input commands fail a second after that. The server (this file run as a
script) imports those libraries once, computes nothing, and forks a child per command; the child runs the
script as `__main__` with the command's arguments, working directory and output files, runs the exit
handlers and exits with the script's status, as the same command in a fresh interpreter would.
The environment is the server's: a command that needs its own environment runs in a fresh interpreter.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

REPLY = '{"returncode"'


class ForkServer:
    """One warm interpreter serving one command at a time (one per thread that runs commands)."""

    def __init__(self, env: dict) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lock = threading.Lock()

    def run(self, script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
        with self.lock, tempfile.TemporaryDirectory() as scratch:
            out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
            job = {"script": script, "args": [str(a) for a in args], "cwd": str(cwd), "stdout": str(out)}
            self.process.stdin.write(json.dumps({**job, "stderr": str(err)}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
            while line and not line.startswith(REPLY):  # anything else on the server's stdout is not ours
                line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("the fork server died; run the command in a fresh interpreter to see why")
            returncode = json.loads(line)["returncode"]
            return subprocess.CompletedProcess([script, *args], returncode, out.read_text(), err.read_text())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _warm_up() -> None:
    """Import what every recipe imports; run nothing (a fork must not inherit a running thread pool)."""
    import accelerate  # noqa: F401
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401
    from trl import DPOTrainer, GRPOTrainer, RewardTrainer, RLOOTrainer, SFTTrainer  # noqa: F401

    from rlhf_recipes.training.ppo import PPOTrainer  # noqa: F401


def _child(job: dict) -> None:
    code = 1
    try:
        os.chdir(job["cwd"])
        for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        script = os.path.abspath(job["script"])
        sys.argv = [job["script"], *job["args"]]
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


def serve() -> None:
    _warm_up()
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(job)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parents[1] / "recipes")
    serve()
