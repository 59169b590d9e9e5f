"""Faults, with real processes and real files: kill -9 at seeded random points of ``data build``,
``train``, ``bench``, ``data export`` and ``data import``, each followed by a rerun of the same
command (``bench --resume``), ends exactly where an uninterrupted run ends; the worker processes of
a killed ``data build --workers 2`` die with it; two processes pointed at one ``--out`` do not
interleave (the second is refused, naming the holder's pid, and a killed holder leaves no stale
lock); a full disk (RLIMIT_FSIZE: writes fail with EFBIG) ends a command with one line naming the
file, leaves the last good files whole, and the rerun resumes to the same result.

Every child runs with one OpenMP thread, so training is bit for bit reproducible on the CPU. Each
kill falls at a random point (seeded) of the command's work: once the run has begun writing (its
lock or a first file, after Python's start-up and imports), after a delay drawn from U(0, w), w the
measured length of the uninterrupted run's writing; a rerun that finishes before its kill is
compared with the reference and a new chain starts from an empty directory, until each command
has had its kills.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import user_environment, visible_files, without_timing

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MP20_SAMPLE = REPO / "tests" / "data" / "mp20_sample.csv"
XRDCORE = [sys.executable, "-m", "xrdcore"]
ENV = {**user_environment(),
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
#: kills per command: 23 in all
KILLS = {"build": 6, "train": 6, "bench": 5, "export": 3, "import": 3}


def commands(cache: Path, export: Path) -> dict[str, list[str]]:
    """The five commands, each writing into its working directory (relative --out)."""
    training = ["--step", "0.1", "--device", "cpu", "--quiet"]
    return {
        "build": ["data", "build", str(MP20_SAMPLE), "--out", "out", "--chunk", "4", "--quiet"],
        "train": ["train", "--dataset", str(cache), "--encoder", "mlp", "--size", "tiny", "--epochs", "4",
                  "--out", "out", *training],
        "bench": ["bench", "--dataset", str(cache), "--encoders", "mlp", "--hierarchies", "flat", "--schedulers",
                  "sum", "--seeds", "0,1", "--quick", "--epochs", "2", "--task", "classification", "--out", "out",
                  "--resume", *training],
        "export": ["data", "export", str(cache), "out.xrdexport"],
        "import": ["data", "import", str(export), "out"],
    }


def start(argv: list[str], cwd: Path, log: Path, **kwargs) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        return subprocess.Popen([*XRDCORE, *argv], cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=handle,
                                start_new_session=True, **kwargs)


def run(argv: list[str], cwd: Path, log: Path) -> tuple[float, float]:
    """Run to the end (asserting success); when it began writing (its lock or a first file: the
    end of Python's start-up and imports) and when it ended, seconds after its start."""
    started = time.perf_counter()
    process = start(argv, cwd, log)
    began = None
    while process.poll() is None:
        if began is None and any(cwd.iterdir()):
            began = time.perf_counter() - started
        time.sleep(0.01)
    assert process.returncode == 0, f"{argv} failed: {log.read_text()[-2000:]}"
    ended = time.perf_counter() - started
    return (began if began is not None else 0.0), ended


def outcome(name: str, cwd: Path):
    """What must be identical after any number of kills and reruns."""
    out = cwd / "out"
    if name in ("build", "import"):
        files = visible_files(out, timed=())
        for json_file in ("manifest.json", "report.json"):
            files[json_file] = without_timing(json.loads(files[json_file]))
        return files
    if name == "train":
        return without_timing(json.loads((out / "metrics.json").read_text()))
    if name == "bench":
        return {str(p.relative_to(out)): without_timing(json.loads(p.read_text()))
                for p in sorted(out.glob("runs/*/seed*/metrics.json"))}
    return (cwd / "out.xrdexport").read_bytes()


def wrote_since(root: Path, moment: float) -> bool:
    """Whether any file under ``root`` was written after ``moment``; False, to be asked again, when
    a temporary file or folder was renamed away while it was being looked at."""
    try:
        return any(path.stat().st_mtime >= moment for path in root.rglob("*"))
    except FileNotFoundError:
        return False


def kill_chain(name: str, argv: list[str], kills: int, work: float, reference, root: Path, seed: int
               ) -> dict[str, int]:
    """Kill the command ``kills`` times, each at a random point of its work: once it has begun
    writing (its lock or a first file: Python's start-up and imports are over), after U(0, work)
    seconds, ``work`` the length of the uninterrupted run's writing; rerun it after each kill.
    Every run that finishes must give the reference outcome."""
    rng = random.Random(seed)
    killed = finished = chain = attempts = 0
    cwd = root / f"{name}-chain0"
    while True:
        attempts += 1
        assert attempts <= 10 * kills, f"{name}: too many attempts"
        log = root / f"{name}-{attempts}.log"
        started = time.time() - 0.01
        process = start(argv, cwd, log)
        if killed < kills:
            while process.poll() is None and not wrote_since(cwd, started):
                time.sleep(0.005)
            try:
                process.wait(timeout=rng.uniform(0, work))
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                killed += 1
                continue
        assert process.wait(timeout=600) == 0, f"{name} rerun failed: {log.read_text()[-2000:]}"
        assert outcome(name, cwd) == reference, f"{name}: the resumed result differs from the uninterrupted one"
        finished += 1
        if killed >= kills:
            return {"kills": killed, "completed": finished, "runs": attempts}
        chain += 1
        cwd = root / f"{name}-chain{chain}"  # it finished before its kill: start again, empty


def test_kill_9_at_random_points_then_rerun_gives_the_uninterrupted_result(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    reference = tmp_path / "reference"
    windows = {"build": run(commands(Path(), Path())["build"], reference / "build", logs / "ref-build.log")}
    cache = reference / "build" / "out"
    export = reference / "export" / "out.xrdexport"
    argv = commands(cache, export)

    def references(names):
        for name in names:
            windows[name] = run(argv[name], reference / name, logs / f"ref-{name}.log")

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(references, [("train", "bench"), ("export", "import")]))
    expected = {name: outcome(name, reference / name) for name in KILLS}

    def chains(names):
        return {name: kill_chain(name, argv[name], KILLS[name], windows[name][1] - windows[name][0], expected[name],
                                 tmp_path / "chains", seed=index) for index, name in enumerate(names)}

    with ThreadPoolExecutor(2) as pool:
        results = {k: v for part in pool.map(chains, [("build", "bench"), ("train", "export", "import")])
                   for k, v in part.items()}
    print("kill test:", json.dumps(results), "windows (s):", {k: [round(t, 1) for t in v] for k, v in windows.items()})
    assert sum(r["kills"] for r in results.values()) >= 20
    assert all(r["kills"] == KILLS[name] for name, r in results.items())


# --- worker processes --------------------------------------------------------------------------


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == group and fields[0] != "Z":
                members.append(int(entry.name))
    return members


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_worker_processes_die_with_a_killed_data_build(tmp_path):
    process = start(["data", "build", str(MP20_SAMPLE), "--out", "out", "--workers", "2", "--quiet"], tmp_path,
                    tmp_path / "build.log")
    group = process.pid  # a new session: the build, its workers and the resource tracker share its id
    deadline = time.time() + 120
    while len(group_members(group)) < 4 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    workers = [pid for pid in group_members(group) if pid != process.pid]
    assert len(workers) >= 3, f"the build did not start its workers: {workers}, {(tmp_path / 'build.log').read_text()}"
    time.sleep(0.5)  # inside their work
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.time() + 5
    while group_members(group) and time.time() < deadline:
        time.sleep(0.05)
    left = group_members(group)
    for pid in left:  # leave nothing behind whatever the verdict
        os.kill(pid, signal.SIGKILL)
    assert not left, f"worker processes outlived their parent: {left}"


# --- locks -------------------------------------------------------------------------------------


HOLD = "import sys, time\nfrom xrdcore.storage import directory_lock\nwith directory_lock(sys.argv[1]):\n" \
       "    print('held', flush=True)\n    time.sleep(600)\n"


def refused(argv: list[str], cwd: Path, directory: Path, holder: int) -> None:
    result = subprocess.run([*XRDCORE, *argv], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0] == (f"xrdcore: error: {directory}: in use by another xrdcore process (pid {holder}); wait for "
                        "it to finish, or choose another directory")


def test_two_builds_into_one_directory_do_not_interleave(tmp_path):
    argv = ["data", "build", str(MP20_SAMPLE), "--out", "out", "--chunk", "8", "--quiet"]
    first = start([*argv, "--workers", "2"], tmp_path, tmp_path / "first.log")  # spawning makes it last
    lock = tmp_path / "out" / ".lock"
    deadline = time.time() + 120
    while not (lock.is_file() and lock.read_text().strip()) and time.time() < deadline:
        time.sleep(0.02)
    refused(argv, tmp_path, Path("out"), first.pid)
    os.kill(first.pid, signal.SIGKILL)  # the OS drops its lock: no stale lock after a kill
    first.wait()
    assert lock.exists()  # the file stays behind, unlocked
    run(argv, tmp_path, tmp_path / "again.log")
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["status"] == "complete"
    assert not lock.exists()


def test_train_bench_and_import_refuse_a_directory_another_process_holds(tmp_path, mp20_cache):
    from xrdcore.data.export import export_cache
    from xrdcore.storage import directory_lock

    export = tmp_path / "cache.xrdexport"
    export_cache(mp20_cache.path, export)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, "out"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        training = ["--dataset", str(mp20_cache.path), "--size", "tiny", "--epochs", "1", "--device", "cpu", "--quiet"]
        refused(["train", "--encoder", "mlp", "--out", "out", *training], tmp_path, Path("out"), holder.pid)
        refused(["bench", "--encoders", "mlp", "--hierarchies", "flat", "--schedulers", "sum", "--seeds", "0",
                 "--task", "classification", "--out", "out", *training], tmp_path, Path("out"), holder.pid)
        refused(["data", "import", str(export), "out"], tmp_path, Path("out"), holder.pid)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with directory_lock(tmp_path / "out"):  # free again at once
        pass


# --- a full disk -------------------------------------------------------------------------------


def limited(size: int):
    """preexec_fn: files may not grow beyond ``size`` bytes (writes fail with EFBIG, as on a full
    disk; Python ignores SIGXFSZ, and so the child is not killed by it)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_full_disk_ends_in_one_line_and_leaves_the_last_good_files(tmp_path, mp20_cache):
    # an export over an earlier one: the earlier file stays as it was
    export = tmp_path / "cache.xrdexport"
    export.write_bytes(b"the last good export")
    result = subprocess.run([*XRDCORE, "data", "export", str(mp20_cache.path), str(export)], env=ENV,
                            capture_output=True, text=True, timeout=300, preexec_fn=limited(4096))
    assert one_error_line(result) == (f"xrdcore: error: {export}: not written: the file-size limit was reached; "
                                      "the previous version, if any, is unchanged")
    assert export.read_bytes() == b"the last good export"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.xrdexport"]  # no temporary left

    # a build that runs out of space part-way: one line naming the file; the rerun resumes to the same cache
    argv = [*XRDCORE, "data", "build", str(MP20_SAMPLE), "--out", "out", "--quiet"]
    result = subprocess.run(argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300,
                            preexec_fn=limited(6000))
    line = one_error_line(result)
    assert line.startswith("xrdcore: error: out/") and "not written: the file-size limit was reached" in line
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())  # whole, still saying so
    assert manifest["status"] == "building"
    assert subprocess.run(argv, cwd=tmp_path, env=ENV, capture_output=True, timeout=300).returncode == 0
    resumed = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert resumed["key"] == mp20_cache.manifest["key"]  # the same build as the session's, uninterrupted
    assert resumed["split_hash"] == mp20_cache.manifest["split_hash"]
    assert visible_files(tmp_path / "out" / "peaks") == visible_files(mp20_cache.path / "peaks")


def test_a_failed_write_names_its_file_and_keeps_the_old_one(tmp_path):
    """storage's atomic writes under a real EFBIG, in a child (the limit is per process)."""
    script = ("import sys\nfrom xrdcore.storage import WriteError, atomic_write_bytes\n"
              "try:\n    atomic_write_bytes(sys.argv[1], bytes(100_000))\n"
              "except WriteError as exc:\n    print(exc.errno, exc)\n")
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    result = subprocess.run([sys.executable, "-c", script, str(target)], env=ENV, capture_output=True, text=True,
                            timeout=120, preexec_fn=limited(1000))
    assert result.stdout.strip() == (f"27 {target}: not written: the file-size limit was reached; the previous "
                                     "version, if any, is unchanged")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["file.bin"]
