"""Results that can be trusted: one file per cell, provenance, resume, atomic writes."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from dualpath_jax import atomic
from dualpath_jax.atomic import atomic_write, check_writable
from dualpath_jax.configure import build_config
from dualpath_jax.results import cell_of, code_info, prepare, stored, write_cell
from dualpath_jax.results import store as results_store
from experiments.figures import cells

from .helpers import ROOT, run_cli

TINY = ["model=ds27b", "cluster=1p1d", "+agents=6", "+len=32k", "workload.trajectories=6"]


def cell(overrides, kind="offline", results_dir="res", base=TINY):
    if kind == "offline":
        return cell_of(cells.offline_config([*base, *overrides]), kind, results_dir)
    aps = None if kind == "capacity" else 0.5
    online = [o for o in base if not o.startswith("+agents")]
    return cell_of(cells.online_config([*online, *overrides], aps), kind, results_dir)


@pytest.mark.parametrize(
    "override",
    [
        "model.kv_format=bf16_indexer",
        "workload.seed=3",
        "cluster.snic_gbps=200",
        "model.d_model=4096",
        "system.dualpath.batching=tokens",
        "sim.alpha_s=2.5",
        "workload.append_scale=2",
    ],
)
def test_cells_that_differ_in_any_number_changing_field_never_share_a_file(override):
    base, other = cell([]), cell([override])
    assert base.path != other.path and base.id != other.id
    assert base.path.name.split("-")[0] == other.path.name.split("-")[0] or "append" in override


def test_the_same_cell_always_maps_to_the_same_file_whatever_cannot_change_numbers():
    base = cell([])
    assert re.fullmatch(r"agents6_len32k_costv2-[0-9a-f]{8}\.json", base.path.name)
    same = cell(["tracking.wandb=true", "sim.progress=false", "tracking.project=x"], results_dir="res")
    assert same.path == base.path and same.identity == base.identity
    assert cell([], results_dir="elsewhere").id == base.id


def test_a_trace_replay_and_a_trace_edit_are_other_cells(tmp_path):
    poisson = cell(["workload=mooncake"], kind="online", base=TINY[:2])
    raw = cells.compose("online", [*cells.QUIET, *TINY[:2], "workload=mooncake", "online.arrivals=trace"])
    replay = cell_of(build_config(raw, online=True), "online", "res")
    assert poisson.path != replay.path and re.fullmatch(r"trace_mooncake_costv2-[0-9a-f]{8}\.json", replay.path.name)
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"id": "a", "turns": [{"input": 100, "cached": 0, "output": 5}]}\n')
    first = cell(["workload=jsonl", f"workload.path={trace}"], base=TINY[:3])
    trace.write_text('{"id": "a", "turns": [{"input": 200, "cached": 0, "output": 5}]}\n')
    second = cell(["workload=jsonl", f"workload.path={trace}"], base=TINY[:3])
    assert first.identity["inputs"]["workload_sha256"] != second.identity["inputs"]["workload_sha256"]
    assert first.path != second.path


def test_results_file_records_its_code_and_identity(tmp_path):
    c = cell([], results_dir=tmp_path)
    path = write_cell(c, {"systems": {}}, "a table")
    data = json.loads(path.read_text())
    assert data["cell"] == {"id": c.id, "kind": "offline", "inputs": {}}
    assert data["config"] == c.identity["config"]
    code = data["code"]
    assert code["version"] == "0.1.0" and code["results_schema"] == 2 and code["sim_semantics"] >= 1
    assert re.fullmatch(r"[0-9a-f]{40}", code["git_commit"]) and isinstance(code["git_dirty"], bool)
    assert code_info(git=False)["git_commit"] is None
    assert path.with_suffix(".txt").read_text().endswith(f"cell {c.id}: {path.name}\n")
    assert stored(c).status == "fresh"


def test_a_run_records_the_checkout_as_it_was_when_it_started(tmp_path, monkeypatch):
    from dualpath_jax.results import provenance

    c = cell([], results_dir=tmp_path)
    provenance.git_state.cache_clear()
    monkeypatch.setattr(provenance.subprocess, "run", _git_says("a" * 40))
    prepare(c)  # the run starts: the checkout is read here
    monkeypatch.setattr(provenance.subprocess, "run", _git_says("b" * 40))  # a commit while it runs
    try:
        assert json.loads(write_cell(c, {"systems": {}}).read_text())["code"]["git_commit"] == "a" * 40
    finally:
        provenance.git_state.cache_clear()


def _git_says(commit: str):
    def run(args, **kw):
        out = commit if "rev-parse" in args else ""
        return subprocess.CompletedProcess(args, 0, stdout=out, stderr="")

    return run


def test_a_file_from_other_semantics_is_stale_and_stored_only_names_it(tmp_path, monkeypatch):
    spec = ("offline", TINY)
    first = cells.get(spec, tmp_path)
    monkeypatch.setattr(results_store, "SIM_SEMANTICS", results_store.SIM_SEMANTICS + 1)
    found = stored(cells.locate(spec, tmp_path))
    assert found.status == "stale" and "simulator semantics" in found.why
    monkeypatch.setattr(cells, "STORED_ONLY", True)
    with pytest.raises(results_store.StaleCellError, match=re.escape(first["_path"].split("/")[-1])):
        cells.get(spec, tmp_path)


def test_non_finite_numbers_are_refused_not_written_as_infinity(tmp_path):
    c = cell([], results_dir=tmp_path)
    with pytest.raises(ValueError, match=r"systems.basic.jct_s = inf"):
        write_cell(c, {"systems": {"basic": {"jct_s": float("inf")}}})
    assert not c.path.exists()


def test_kv_format_sweep_writes_two_files_skips_them_then_rerun_rewrites_identical_bytes(workdir):
    args = [
        "--multirun",
        *TINY,
        "model.kv_format=fp8,bf16_indexer",
        "tracking.wandb=false",
        "sim.progress=false",
        f"results_dir={workdir / 'res'}",
    ]
    out = run_cli("experiments.offline", args, workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    files = sorted((workdir / "res" / "offline" / "ds27b_1p1d").glob("*.json"))
    assert len(files) == 2
    formats = {json.loads(f.read_text())["config"]["model"]["kv_format"] for f in files}
    assert formats == {"fp8", "bf16_indexer"}
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    again = run_cli("experiments.offline", args, workdir)
    assert again.returncode == 0
    assert sorted(re.findall(r"skip: (\S+)", again.stdout)) == [str(f) for f in files]
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files} == before
    forced = run_cli("experiments.offline", [*args, "rerun=true"], workdir)
    assert forced.returncode == 0 and "skip:" not in forced.stdout
    for f in files:
        assert f.read_bytes() == before[f][0] and f.stat().st_mtime_ns != before[f][1]


def test_a_single_run_of_a_stored_cell_shows_its_stored_table(workdir):
    args = [*TINY, "tracking.wandb=false", "sim.progress=false", f"results_dir={workdir / 'res'}"]
    first = run_cli("experiments.offline", args, workdir)
    again = run_cli("experiments.offline", args, workdir)
    assert first.returncode == again.returncode == 0 and "skip:" not in first.stdout
    [stored_table] = (workdir / "res" / "offline" / "ds27b_1p1d").glob("*.txt")
    assert "skip: " in again.stdout and stored_table.read_text().rstrip("\n") in again.stdout
    assert "stored results of this cell; rerun=true computes them again" in again.stdout


def test_a_failing_cell_does_not_stop_the_sweep_which_ends_with_a_summary(workdir):
    out = run_cli(
        "experiments.offline",
        [
            "--multirun",
            *TINY[:2],
            "+agents=6,0",
            "+len=32k",
            "workload.trajectories=6",
            "tracking.wandb=false",
            "sim.progress=false",
            f"results_dir={workdir / 'res'}",
        ],
        workdir,
    )
    assert out.returncode == 1
    assert len(list((workdir / "res" / "offline" / "ds27b_1p1d").glob("*.json"))) == 1
    assert "2 cells, 1 ran, 0 skipped, 1 failed" in out.stderr
    assert re.search(r"failed: #1 .*\+agents=0.*agents takes a positive integer", out.stderr)
    assert "Traceback" not in out.stderr + out.stdout


@pytest.mark.parametrize(
    "override, says",
    [
        ("model=nope", "Could not find 'model/nope'"),
        ("model=1", "Config group override must be a string"),
        ("model=[1,2]", "model=[1,2]: the config group model takes one option name (ds27b, ds660b,"),
        ("sim.nope=3", "Could not override 'sim.nope'"),
    ],
)
def test_hydras_own_refusals_exit_2_without_a_traceback(workdir, override, says):
    out = run_cli("experiments.offline", [*TINY, override], workdir)
    assert out.returncode == 2 and says in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_an_unwritable_results_dir_fails_before_the_simulation(workdir):
    blocker = workdir / "a_file"
    blocker.write_text("")
    out = run_cli("experiments.offline", [*TINY, "tracking.wandb=false", f"results_dir={blocker}/res"], workdir)
    assert out.returncode == 2 and "Traceback" not in out.stderr + out.stdout
    assert "results_dir: cannot write to" in out.stdout and "basic" not in out.stdout


def test_parallel_runs_started_in_one_second_get_their_own_hydra_folders(workdir):
    args = [*TINY, "tracking.wandb=false", "sim.progress=false", f"results_dir={workdir / 'res'}"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.offline", *args],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(3)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert len(list((workdir / "outputs").glob("*/*"))) == 3


# --- atomic writes ------------------------------------------------------------------------------


def test_a_write_interrupted_midway_leaves_the_old_file_and_no_temp(tmp_path):
    path = atomic_write(tmp_path / "r.json", "old")

    def half(f):
        f.write(b"new, half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


def test_new_files_have_normal_modes(tmp_path):
    old = os.umask(0o022)
    try:
        assert oct(atomic_write(tmp_path / "a.txt", "x").stat().st_mode & 0o777) == "0o644"
    finally:
        os.umask(old)


@pytest.mark.parametrize("unnamed", [True, False], ids=["o_tmpfile", "named_temp"])
def test_kill_9_mid_write_keeps_the_old_file_and_leaves_no_temp_behind(tmp_path, unnamed):
    path = atomic_write(tmp_path / "r.json", "old")
    script = textwrap.dedent(f"""
        import sys, time
        from dualpath_jax import atomic
        if not {unnamed}:
            atomic._O_TMPFILE = 0
        def slow(f):
            f.write(b"half of the new")
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
        atomic.atomic_write({str(path)!r}, slow)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert path.read_text() == "old"
    left = [n for n in os.listdir(tmp_path) if n != "r.json"]
    assert left == ([] if unnamed else [f".r.json.{child.pid}.tmp"])
    atomic_write(tmp_path / "other.json", "x")  # the next write into the folder sweeps dead temps
    assert sorted(os.listdir(tmp_path)) == ["other.json", "r.json"]


def test_a_folder_that_cannot_be_written_is_named(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(PermissionError, match=r"results_dir: cannot write to .*f/sub"):
        check_writable(tmp_path / "f" / "sub", "results_dir")
    assert atomic._TEMP.match(".a.json.123.tmp")


def test_writers_checking_one_folder_at_once_all_pass(tmp_path):
    # The figures' pool checks a cell's folder from several processes at once. A probe file of one
    # fixed name was written and removed by each, so one could remove another's probe and fail
    # with "No such file or directory"; the check also overwrote a user's file of that name.
    (tmp_path / ".write-check").write_text("mine")
    errors = []

    def check():
        try:
            for _ in range(300):
                check_writable(tmp_path, "results_dir")
        except PermissionError as e:
            errors.append(e)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(os.listdir(tmp_path)) == [".write-check"] and (tmp_path / ".write-check").read_text() == "mine"


def test_two_processes_writing_one_cell_leave_one_consistent_pair(tmp_path):
    # Writer 1 is slow between its .json and its .txt; writer 2 starts inside that window. Without
    # the folder lock writer 2's pair would land between writer 1's files: json of 2, txt of 1.
    script = textwrap.dedent(f"""
        import sys, time
        from experiments.figures import cells
        from dualpath_jax.results import cell_of, store, write_cell
        w, pause, start = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
        write = store.atomic_write
        def slow_write(path, data):
            write(path, data)
            if str(path).endswith(".json"):
                time.sleep(pause)
        store.atomic_write = slow_write
        c = cell_of(cells.offline_config({TINY!r}), "offline", {str(tmp_path)!r})
        time.sleep(max(0.0, start - time.time()))
        write_cell(c, {{"systems": {{"writer": w}}}}, f"writer {{w}}")
        print(c.path)
    """)
    start = time.time() + 5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(w), str(pause), str(start + delay)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w, pause, delay in ((1, 1.0, 0.0), (2, 0.0, 0.3))
    ]
    paths = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(paths) == 1
    path = paths.pop()
    writer = json.loads(open(path).read())["systems"]["writer"]
    assert open(path[:-5] + ".txt").read().startswith(f"writer {writer}\n")
    assert len(os.listdir(os.path.dirname(path))) == 2  # the pair, no temp files


def _state(pid: int) -> str | None:
    """A process's state letter from /proc (R, S, Z, ...), or None if it is gone."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the process table from /proc")
def test_pool_workers_die_with_the_figures_command(tmp_path):
    # Two cells that run for minutes; the parent is killed (kill -9) while its workers run them.
    script = textwrap.dedent(f"""
        from experiments.figures import cells
        specs = [("offline", ["model=ds660b", "+agents=" + str(n), "+len=64k"]) for n in (4000, 4001)]
        cells.fetch(specs, "slow", results_dir={str(tmp_path)!r}, jobs=2)
    """)
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while len(_children(parent.pid)) < 2 and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # let both workers start their cells
    workers = _children(parent.pid)
    assert len(workers) >= 2, "the pool never started"
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    deadline = time.time() + 15
    while any(_state(w) not in (None, "Z") for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    alive = [w for w in workers if _state(w) not in (None, "Z")]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, f"pool workers {alive} outlived their parent"


def test_results_list_finds_cells_by_field_and_shows_what_varies(tmp_path, capsys):
    from experiments.results import main as results_main

    for agents in (4, 6):
        c = cell([f"+agents={agents}"], results_dir=tmp_path)
        write_cell(c, {"systems": {}})
    seeded = write_cell(cell(["workload.seed=5"], results_dir=tmp_path), {"systems": {}})
    old = tmp_path / "offline" / "ds27b_1p1d" / "agents6_len32k.json"  # a schema-1 file
    old.write_text(json.dumps({"config": {"model": {"name": "ds27b"}}, "systems": {}}))
    assert results_main(["list", "--results-dir", str(tmp_path), "--stale"]) == 0
    out = capsys.readouterr().out
    assert "1 stored cell(s)" in out and f"stale: {old}: written before" in out
    assert results_main(["list", "--results-dir", str(tmp_path), "agents=6"]) == 0
    out = capsys.readouterr().out
    assert out.count("agents6_len32k_costv2-") == 2 and "agents4_len32k" not in out
    assert "workload.seed" in out and "stale" not in out
    assert results_main(["list", "--results-dir", str(tmp_path), "seed=5"]) == 0
    listed = capsys.readouterr().out
    assert seeded.name in listed and "2 stored" not in listed and "1 stored cell(s)" in listed
    assert results_main(["list", "--results-dir", str(tmp_path), "nope=1"]) == 2
    assert "filter 'nope' names no field" in capsys.readouterr().out
