"""A whole Flower federation on one machine: a SuperLink and one SuperNode per site on 127.0.0.1.

    python -m jaxlvlm.federated.flower.launch --config configs/federated_builtin.py:approach=pilot \\
        --workdir runs/fed_flower --num_sites 4

starts the SuperLink (insecure, loopback only), ``num_sites`` SuperNodes (each with its own site
workdir under <workdir>/sites/ and its own config entry naming its data), submits the app with
``flwr run`` and stops everything when the run ends. When num_sites differs from the config's
number of clients, method.clients_per_task is set to num_sites / number of tasks. Logs go to
<workdir>/logs/; the sites and the server share one compilation cache, <workdir>/jax_cache.
The multi-machine form (one command per machine) is in the README.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import time

import psutil
import tomli_w

from jaxlvlm.federated import run_parts as F
from jaxlvlm.federated.flower import protocol as P
from jaxlvlm.files import is_remote, read_json, safe_name
from jaxlvlm.train.phase_config import task_specs

APP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app")
CONNECTION = "jaxlvlm-local"
COMPLETED = "finished:completed"  # a run's status (flwr ls) when its ServerApp returned


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}; see its log")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:g} s")


def site_names(config) -> list[str]:
    """The config's client names, as make_clients will name them (without reading any data)."""
    cpt = config.method.get("clients_per_task", 2)
    return [
        f"{t}#{j}"
        for t in F.federated_tasks(config)
        for j in range(cpt * len(task_specs(config, t)))
    ]


def node_config(**kv) -> str:
    """--node-config's "k='v' ..." form: TOML literal strings, so values may hold double quotes."""
    for k, v in kv.items():
        if "'" in str(v):
            raise ValueError(f"node config {k}={v!r}: Flower's parser cannot carry a ' here")
    return " ".join(f"{k}={v}" if isinstance(v, int) else f"{k}='{v}'" for k, v in kv.items())


class LocalFederation:
    """The processes of a federation on the loopback interface (each in its own process group)."""

    def __init__(self, workdir: str, env: dict | None = None):
        if is_remote(workdir):
            # The processes' logs and Flower's home are local files that Flower itself opens.
            raise ValueError(
                f"--workdir {workdir}: the local launcher keeps its processes' logs and Flower's "
                "home in the workdir and needs a local directory; start the ServerApp and "
                "SuperNodes by hand to give them gs:// run directories (README, Flower section)"
            )
        self.workdir = os.path.abspath(workdir)
        self.logs = os.path.join(self.workdir, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.env = dict(env if env is not None else os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        self.env["PYTHONPATH"] = os.pathsep.join(
            [os.path.abspath(root), *filter(None, [self.env.get("PYTHONPATH")])]
        )
        self.env["FLWR_HOME"] = os.path.join(self.workdir, "flwr_home")
        # Flower's commands (flower-superlink, flwr, and the app processes they start) are this
        # interpreter's console scripts: found even when its environment is not activated (a
        # venv's python run by path), and never another installation's earlier on PATH.
        self.env["PATH"] = os.pathsep.join(
            [sysconfig.get_path("scripts"), *filter(None, [self.env.get("PATH")])]
        )
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.runs = 0

    def _start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(os.path.join(self.logs, f"{safe_name(name)}.log"), "a")  # noqa: SIM115
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def start_superlink(self, timeout: float = 60.0) -> None:
        """The SuperLink on this federation's port (again, after a kill: same port, same state)."""
        os.makedirs(self.env["FLWR_HOME"], exist_ok=True)
        with open(os.path.join(self.env["FLWR_HOME"], "config.toml"), "w") as f:
            f.write(
                f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                f'address = "127.0.0.1:{self.port}"\ninsecure = true\n'
            )
        cmd = ["flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(self.port)]
        # A database, not memory: a restarted SuperLink still knows the SuperNodes and their runs.
        cmd += ["--database", os.path.join(self.workdir, "superlink.db")]
        # The app's dependencies are this environment's; never let Flower install any.
        proc = self._start("superlink", [*cmd, "--disable-runtime-dependency-installation"])
        wait_for_port(self.port, timeout, proc, "flower-superlink")

    def start_supernode(self, site: str, **config) -> None:
        """One site's SuperNode; config: its node config (config, client, workdir, ...)."""
        cmd = [
            "flower-supernode",
            "--insecure",
            "--superlink",
            f"127.0.0.1:{self.port}",
            "--port",
            str(free_port()),
            "--node-config",
            node_config(**config),
        ]
        self._start(f"supernode_{site}", cmd)

    def kill(self, name: str) -> None:
        """Kills a process and everything it started, at once: a crashed site or server."""
        proc = self.procs.pop(name)
        _signal_tree(proc.pid, signal.SIGKILL)
        proc.wait()

    def submit(self, run_config: dict) -> subprocess.Popen:
        """``flwr run`` of the app with ``run_config``; returns the attached (streaming) process."""
        self.runs += 1
        path = os.path.join(self.workdir, f"run_config_{self.runs}.toml")
        with open(path, "wb") as f:
            tomli_w.dump(run_config, f)  # a file: values may hold quotes and spaces
        cmd = ["flwr", "run", APP_DIR, CONNECTION, "--run-config", path, "--stream"]
        return self._start(f"run_{self.runs}", cmd)

    def outcome(self, run: subprocess.Popen, timeout: float | None) -> dict:
        """Waits until the SuperLink says the run of the ``flwr run`` process ``run`` finished;
        returns {"run_id", "status" (e.g. 'finished:completed', 'finished:failed'), "details"}.

        Neither the exit status of ``flwr run --stream`` nor its exit says how the run ended: it
        exits 0 when its log stream ends, also for a ServerApp that raised or that the SuperLink
        failed, so the run's status is read from the SuperLink (``flwr ls``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            code = run.wait(timeout)
        except subprocess.TimeoutExpired:
            return {"run_id": None, "status": "timeout", "details": f"running after {timeout:g} s"}
        log = os.path.join(self.logs, f"run_{self.runs}.log")
        with open(log, errors="replace") as f:
            m = re.search(r"Successfully started run (\d+)", f.read())
        if m is None:
            return {"run_id": None, "status": f"not started (flwr run exit {code})", "details": log}
        run_id = int(m.group(1))
        while True:
            row = self.run_status(run_id)
            if row["status"].startswith("finished"):
                break
            if deadline is not None and time.monotonic() > deadline:
                break  # the stream ended early and the run is still going
            time.sleep(1.0)
        return {"run_id": run_id, "status": row["status"], "details": row["status-details"]}

    def run_status(self, run_id: int) -> dict:
        """The SuperLink's row for ``run_id`` (``flwr ls --format json``: status, status-details)."""
        cmd = ["flwr", "ls", CONNECTION, "--run-id", str(run_id), "--format", "json"]
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        try:
            (row,) = json.loads(out.stdout)["runs"]
        except (ValueError, KeyError, TypeError) as e:
            raise RuntimeError(
                f"{' '.join(cmd)} gave no run status: {out.stdout}{out.stderr}"
            ) from e
        return row

    def log_tails(self, chars: int = 4000, extra_dirs: tuple[str, ...] = ()) -> str:
        """The end of every process log of this federation (and of site_process.log files under
        ``extra_dirs``): what a failed run's error message shows."""
        paths = sorted(glob.glob(os.path.join(self.logs, "*.log")))
        for d in extra_dirs:
            paths += sorted(glob.glob(os.path.join(d, "**", "site_process.log"), recursive=True))
        parts = []
        for p in paths:
            with open(p, errors="replace") as f:
                parts.append(f"----- {p} (end)\n{f.read()[-chars:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name)  # nothing of a finished local federation needs a graceful exit


def _signal_tree(pid: int, sig: int) -> None:
    """Sends ``sig`` to ``pid`` and all its descendants (Flower's SuperExec starts its own
    session, so the process group alone would leave the ServerApp running)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)


def launch(
    config_spec: str,
    workdir: str,
    num_sites: int,
    round_timeout: float = 1800.0,
    join_timeout: float = 600.0,
    overrides: str = "",
) -> dict:
    """Runs the federation to the end on this machine; returns the summary."""
    path, _, arg = config_spec.partition(":")
    config_spec = f"{os.path.abspath(path)}:{arg}" if arg else os.path.abspath(path)
    config = P.load_config(config_spec, overrides)
    names = site_names(config)
    if num_sites != len(names):
        tasks = F.federated_tasks(config)
        if num_sites % len(tasks):
            raise ValueError(
                f"--num_sites {num_sites}: {config_spec} has {len(tasks)} tasks and {len(names)} "
                f"clients; pass a multiple of {len(tasks)}"
            )
        overrides = f"{overrides} method.clients_per_task={num_sites // len(tasks)}".strip()
        names = site_names(P.load_config(config_spec, overrides))
    fed = LocalFederation(workdir)
    cache = os.path.join(fed.workdir, "jax_cache")  # one machine: every process shares it
    try:
        fed.start_superlink()
        for name in names:
            site_dir = os.path.join(fed.workdir, "sites", safe_name(name))
            fed.start_supernode(
                name,
                config=config_spec,
                client=name,
                workdir=site_dir,
                overrides=overrides,
                jax_cache=cache,
            )
        run = fed.submit(
            dict(
                config=config_spec,
                workdir=os.path.join(fed.workdir, "server"),
                num_sites=num_sites,
                round_timeout=round_timeout,
                join_timeout=join_timeout,
                overrides=overrides,
                jax_cache=cache,
            )
        )
        result = fed.outcome(run, timeout=None)
    finally:
        fed.stop()
    summary = read_json(os.path.join(fed.workdir, "server", F.SUMMARY_FILE))
    if result["status"] != COMPLETED or summary is None:
        raise RuntimeError(
            f"the federation did not finish: run {result['run_id']} {result['status']} "
            f"({result['details']}); see the logs in {fed.logs}"
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True, help="file.py[:arg], as for jaxlvlm.main")
    p.add_argument("--workdir", required=True)
    p.add_argument("--num_sites", type=int, required=True)
    p.add_argument("--round_timeout", type=float, default=1800.0)
    p.add_argument("--join_timeout", type=float, default=600.0)
    p.add_argument("--overrides", default="", help="'method.rounds=2 seed=1': dotted key=value")
    a = p.parse_args(argv)
    s = launch(a.config, a.workdir, a.num_sites, a.round_timeout, a.join_timeout, a.overrides)
    print(f"macro score {s['macro']:.2f}; report: {os.path.join(a.workdir, 'server', 'report.md')}")
    print("per site:", " ".join(f"{c['name']}={c['score']:.1f}" for c in s["clients"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
