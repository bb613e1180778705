"""Reliability seen from outside, as a batch job sees it: every case runs the real CLI in a subprocess.

- bad input: exit 2 and exactly one stderr line naming the file or field (docs/ERRORS.md lists them);
- kill -9 during `nurdad train` / `nurdad generate`, then rerun: the same outputs as an uninterrupted run;
- a NaN loss stops training with one line and keeps the last good checkpoint;
- the same command and seed give bit-identical weights and scores; outputs only appear complete.

Subprocesses run with OMP_NUM_THREADS=1: several overlap on 2 cores, and one thread fixes the order
of float reductions. Paths are relative to the work directory, as a user types them, so the messages
compared here are the ones printed in docs/ERRORS.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from helpers import toy_jet_file
from nurdad.data import JetFile, write_jets
from nurdad.detectors import MahalanobisDetector
from nurdad.errors import SchemaError
from nurdad.generate import GenerateConfig, plan_shards, shard_dir

CLI = [sys.executable, "-m", "nurdad.cli", "-q"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TOY_COUNTS = {"qcd": 400, "wz": 400, "top": 40}  # about 1 s per epoch with TINY_TOML on one thread
TINY_TOML = """\
[train]
epochs = 4
batch_size = 64
fresh_critic_epochs = 2

[train.nurd]
critic_warmup_steps = 5
"""
TRAIN = ["train", "-d", "toy.h5", "--config", "tiny.toml"]
TIMEOUT = 300


def nurdad(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)


def start(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = TIMEOUT) -> None:
    """Poll `condition()` every 20 ms while `process` runs."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"process ended (rc {process.returncode}) before {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def model_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=False)["state"]


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = model_state(a), model_state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), (b, key)


def comparable_history(run_dir: Path) -> list[list[str]]:
    """history.csv without the wall-clock columns."""
    rows = [line.split(",") for line in (run_dir / "history.csv").read_text().splitlines()]
    keep = [i for i, name in enumerate(rows[0]) if name not in ("seconds", "jets_per_second")]
    return [[row[i] for i in keep] for row in rows]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The directory every subprocess runs in: toy.h5 (50x50 toy jets) and tiny.toml."""
    work = tmp_path_factory.mktemp("reliability")
    toy_jet_file(work / "toy.h5", TOY_COUNTS)
    (work / "tiny.toml").write_text(TINY_TOML)
    return work


@pytest.fixture(scope="module")
def reference(work) -> dict:
    """Two uninterrupted runs of one `nurdad train` command (ref/, again/; on two cores at once).

    Meanwhile a second writer tries ref/: the first process is frozen (SIGSTOP) while it holds the
    lock, so the second meets a live owner whatever the machine's speed; ref/ must finish unharmed.
    """
    first = start(*TRAIN, "-o", "ref", cwd=work)
    again = start(*TRAIN, "-o", "again", cwd=work)
    lock = work / "ref" / ".lock"
    wait_for(lambda: lock.exists() and lock.read_text().strip(), first, "ref/.lock")
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = nurdad(*TRAIN, "-o", "ref", cwd=work)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=TIMEOUT)
    assert first.returncode == 0, err
    _, again_err = again.communicate(timeout=TIMEOUT)
    assert again.returncode == 0, again_err
    return {"dir": work / "ref", "stdout": out, "stderr": err, "second": second, "pid": first.pid}


# ------------------------------------------------------------------------------------------ bad input
@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    message: str  # after 'nurdad: error: '; '...' stands for any text


def _case(id: str, args: str, message: str) -> Case:
    return Case(id, tuple(args.format(id=id).split()), message)


_OUT = "-o out/{id}"  # a fresh run dir per case: it must stay empty
CASES = [
    _case("missing_file", f"train -d missing.h5 {_OUT}", "missing.h5: no such file"),
    _case("not_hdf5", "data info text.h5", "text.h5: not an HDF5 file (expected a nurdad jet file)"),
    _case("truncated_file", "data merge toy.h5 truncated.h5 -o out/merged.h5",
          "truncated.h5: cannot open (...truncated file...)"),
    _case("missing_dataset", "data info nomass.h5",
          "nomass.h5: missing dataset 'mass' (a nurdad jet file has ['images', 'process', 'mass'] and the "
          "columns of nurdad.data.COLUMNS)"),
    _case("images_not_square", "data info nonsquare.h5",
          "nonsquare.h5: dataset 'images' has shape (4, 8, 9); expected (N, H, W), H == W"),
    _case("images_2d", "data info flat.h5",
          "flat.h5: dataset 'images' has shape (4, 64); expected (N, H, W), H == W"),
    _case("empty_file", "data info empty.h5", "empty.h5: the file holds no jets"),
    _case("row_count_mismatch", "data info rows.h5",
          "rows.h5: dataset 'mass' has shape (3,); expected (4,) like 'images'"),
    _case("nan_pixels", f"train -d nanpix.h5 {_OUT}",
          "nanpix.h5: dataset 'images' has NaN/inf pixels (first at row 2)"),
    _case("inf_mass", "data info --check infmass.h5",
          "infmass.h5: column 'mass' has NaN/inf (first at row 1)"),
    _case("negative_pixels", "data info --check negpix.h5",
          "negpix.h5: dataset 'images' has negative pixels (first at row 3); pixels are summed pT >= 0"),
    _case("nan_pixels_at_scoring", "score ref nanpix.h5 -o out/nan_scores.h5",
          "nanpix.h5: dataset 'images' has NaN/inf pixels (first at row 2)"),
    _case("image_size_vs_model", f"train -d small16.h5 {_OUT}",
          "small16.h5: images are 16x16 pixels but train.nurd.encoder.image_size = 50; set it in --config"),
    _case("image_size_at_scoring", "score ref small16.h5 -o out/small_scores.h5",
          "small16.h5: images are (16, 16), the model in ref was trained on (50, 50)"),
    _case("nuisance_column_absent", f"train -d minimal.h5 --nuisance pt {_OUT}",
          "train.nuisance: column 'pt' is not in minimal.h5"),
    _case("nuisance_not_numeric", f"train -d toy.h5 --nuisance process {_OUT}",
          "train.nuisance: 'process' is not a numeric jet column; expected one of [...]"),
    _case("nuisance_nan", f"train -d toy.h5 --nuisance tau21 {_OUT}",
          "toy.h5: column 'tau21' has NaN/inf values, so it cannot serve as a nuisance"),
    _case("background_absent", f"train -d toy.h5 --backgrounds qcd hbb {_OUT}",
          "toy.h5: no jets of process 'hbb' (named in train.backgrounds); the data has ['qcd', 'top', 'wz']"),
    _case("one_background", f"train -d toy.h5 --backgrounds qcd {_OUT}",
          "train.backgrounds: NuRD needs at least 2 background classes, got ['qcd']"),
    _case("too_few_jets", f"train -d toy.h5 --backgrounds qcd top {_OUT}",
          "process 'top': 24 training jets; need at least train.min_class_jets = 50"),
    _case("unknown_option", f"train -d toy.h5 --bogus {_OUT}",
          "unrecognized arguments: --bogus (see 'nurdad --help')"),
    _case("unknown_toml_key", f"train -d toy.h5 --config unknown.toml {_OUT}",
          "unknown config key 'train.nurd.lambda'; expected one of [...]"),
    _case("bad_toml_syntax", f"train -d toy.h5 --config syntax.toml {_OUT}",
          "syntax.toml: not valid TOML (...)"),
    _case("negative_lambda", f"train -d toy.h5 --lambda -1 {_OUT}",
          "nurd.lambda_penalty: expected a finite value >= 0, got -1.0"),
    _case("bad_shrinkage", f"train -d toy.h5 --config shrink.toml {_OUT}",
          "critic.shrinkage: expected a value in (0, 1], got 0.0"),
    _case("bad_fractions", f"train -d toy.h5 --val-fraction 0.6 --test-fraction 0.5 {_OUT}",
          "train.val_fraction, train.test_fraction: expected each in (0, 1) with sum < 1, got 0.6 and 0.5"),
    _case("resume_nothing", f"train -d toy.h5 --resume {_OUT}",
          "out/resume_nothing: nothing to resume (no config.json); drop --resume"),
    _case("run_dir_taken", "train -d toy.h5 --nuisance pt -o taken",
          "taken: already holds a run; use --resume to continue it or another --out"),
    _case("run_dir_locked", f"train -d toy.h5 {_OUT}",
          "out/run_dir_locked: another nurdad process (pid ... on ...) is writing this run dir; wait for it "
          "or choose another --out (delete out/run_dir_locked/.lock if it is gone)"),
    _case("out_is_a_file", "train -d toy.h5 -o text.h5/run", "text.h5/run: Not a directory"),
    _case("resume_old_run_format", "train -d toy.h5 --config tiny.toml --resume -o old",
          "old: run format 0 is not this nurdad's (1); train again into a new run dir"),
    _case("score_old_run_format", "score old toy.h5 -o out/old_scores.h5",
          "old: run format 0 is not this nurdad's (1); train again into a new run dir"),
    _case("evaluate_old_run_format", "evaluate old --data toy.h5 -o out/old_metrics.json",
          "old: run format 0 is not this nurdad's (1); train again into a new run dir"),
    _case("damaged_run_config", "score damaged toy.h5 -o out/damaged_scores.h5",
          "damaged/config.json: damaged JSON (...)"),
    _case("unknown_process", "generate --jets gluino=5 -o out/gluino.h5",
          "unknown process 'gluino'; expected one of [...]"),
    _case("bad_jets_count", "generate --jets qcd=lots -o out/lots.h5",
          "--jets: expected PROCESS=NUMBER like qcd=2000, got 'qcd=lots'"),
    _case("bad_shard", "generate --jets qcd=5 --shard 4/2 -o out/shard.h5",
          "--shard: expected 0 <= i < N, got '4/2'"),
    _case("bad_workers", "generate --jets qcd=5 --workers 0 -o out/workers.h5",
          "--workers: expected a positive number of processes, got 0"),
    _case("pt_window_inverted", "generate --jets qcd=5 --pt-min 700 --pt-max 600 -o out/pt.h5",
          "simulation.pt_max_gev: must be > pt_min_gev, got 600.0"),
    _case("generate_over_foreign_file", "generate --jets qcd=5 -o text.h5",
          "text.h5: exists and is not a readable nurdad jet file; delete it or choose another --out"),
]


def pattern(message: str) -> re.Pattern:
    """`message` as a regular expression in which '...' matches any text."""
    return re.compile(".*".join(re.escape(part) for part in message.split("...")))


def make_bad_inputs(work: Path) -> None:
    """The broken files, configs and run dirs the cases name (ref/ must hold a finished run)."""
    (work / "text.h5").write_text("sample,mass\n1,80.4\n")
    data = (work / "toy.h5").read_bytes()
    (work / "truncated.h5").write_bytes(data[: len(data) // 2])  # an interrupted copy
    qcd = np.array([b"qcd"] * 4)
    raw = {
        "nomass.h5": {"images": np.zeros((4, 8, 8), np.float32), "process": qcd},
        "nonsquare.h5": {"images": np.zeros((4, 8, 9), np.float32), "process": qcd, "mass": np.ones(4)},
        "flat.h5": {"images": np.zeros((4, 64), np.float32), "process": qcd, "mass": np.ones(4)},
        "empty.h5": {"images": np.zeros((0, 8, 8), np.float32), "process": qcd[:0], "mass": np.ones(0)},
        "rows.h5": {"images": np.zeros((4, 8, 8), np.float32), "process": qcd, "mass": np.ones(3)},
        "minimal.h5": {"images": np.full((20, 50, 50), 1 / 2500, np.float32),
                       "process": np.array([b"qcd", b"wz"] * 10), "mass": np.linspace(50, 150, 20)},
    }
    for name, datasets in raw.items():  # hand-made with h5py: files from other tools
        with h5py.File(work / name, "w") as f:
            for key, value in datasets.items():
                f[key] = value
    for name, (column, row, value) in {"nanpix.h5": ("images", 2, np.nan), "infmass.h5": ("mass", 1, np.inf),
                                       "negpix.h5": ("images", 3, -0.1)}.items():
        images, mass = np.full((4, 50, 50), 1 / 2500, np.float32), np.full(4, 80.0)
        if column == "images":
            images[row, 25, 25] = value
        else:
            mass[row] = value
        write_jets(work / name, images, {"process": qcd, "mass": mass})
    toy_jet_file(work / "small16.h5", {"qcd": 10, "top": 5}, size=16)
    (work / "unknown.toml").write_text("[train.nurd]\nlambda = 2.0\n")  # the field is lambda_penalty
    (work / "shrink.toml").write_text("[train.nurd.critic]\nshrinkage = 0.0\n")
    (work / "syntax.toml").write_text("[train]\nepochs = 4\nlr = 1e-3,\n")
    shutil.copytree(work / "ref", work / "taken")
    shutil.copytree(work / "ref", work / "old")
    config = work / "old" / "config.json"
    config.write_text(config.read_text().replace('"run_format": 1', '"run_format": 0'))
    shutil.copytree(work / "ref", work / "damaged")
    config = work / "damaged" / "config.json"
    config.write_text(config.read_text()[:200])  # cut by a full disk or a bad copy
    (work / "out").mkdir()


def run_cases(work: Path, cases: list[Case]) -> dict[str, subprocess.CompletedProcess]:
    """Run every case at once (they are independent); one holds out/run_dir_locked/.lock meanwhile."""
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        locked = work / "out" / "run_dir_locked"
        locked.mkdir(parents=True)
        (locked / ".lock").write_text(str(holder.pid))
        with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
            results = dict(zip([c.id for c in cases],
                               pool.map(lambda c: nurdad(*c.args, cwd=work), cases), strict=True))
    finally:
        holder.kill()
        holder.wait()
    (locked / ".lock").unlink()
    return results


@pytest.fixture(scope="module")
def bad_input(work, reference) -> tuple[Path, dict[str, subprocess.CompletedProcess], dict[str, bytes]]:
    make_bad_inputs(work)
    before = {name: (work / "taken" / name).read_bytes() for name in ("config.json", "weights.png")}
    before["text.h5"] = (work / "text.h5").read_bytes()
    return work, run_cases(work, CASES), before


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_and_exit_2(case, bad_input):
    work, results, _ = bad_input
    result = results[case.id]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert pattern(f"nurdad: error: {case.message}").fullmatch(result.stderr.rstrip("\n")), result.stderr
    assert result.stdout == ""
    if "out/" + case.id in case.args:  # a refused run leaves nothing a rerun would trip over
        out = work / "out" / case.id
        assert not out.exists() or not list(out.iterdir()), sorted(out.iterdir())


def test_errors_doc_lists_every_case():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "ERRORS.md").read_text()
    for case in CASES:
        assert f"`{case.id}`" in doc and case.message.split("...")[0] in doc, f"update docs/ERRORS.md: {case}"


def test_refused_commands_leave_existing_files_alone(bad_input):
    work, _, before = bad_input
    for name in ("config.json", "weights.png"):
        assert (work / "taken" / name).read_bytes() == before[name], name  # no diagnostic overwritten
    assert (work / "text.h5").read_bytes() == before["text.h5"]
    assert not list((work / "out").glob("*.h5")) and not list((work / "out").glob("*.json"))


def test_second_writer_on_a_live_run_is_refused(reference):
    second = reference["second"]
    assert second.returncode == 2 and "Traceback" not in second.stderr
    owner = f"pid {reference['pid']} on {socket.gethostname()}"
    assert second.stderr == (f"nurdad: error: ref: another nurdad process ({owner}) is writing this run "
                             "dir; wait for it or choose another --out (delete ref/.lock if it is gone)\n")
    assert reference["stderr"] == "" and len(reference["stdout"].splitlines()) == 1
    assert not (reference["dir"] / ".lock").exists()


# ----------------------------------------------------------------------------------- interrupted runs
def test_kill_9_during_training_then_resume_equals_uninterrupted(work, reference):
    cut = work / "cut"
    process = start(*TRAIN, "-o", "cut", cwd=work)
    wait_for(lambda: (cut / "checkpoint.pt").exists(), process, "the first checkpoint")
    time.sleep(0.2)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=TIMEOUT)
    assert process.returncode == -signal.SIGKILL
    assert not (cut / "model.pt").exists(), "the run finished before the kill: make epochs longer"
    assert (cut / ".lock").read_text().startswith(f"{process.pid}@")  # left by the dead process
    checkpoint = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert checkpoint["epoch"] < 3 and len(checkpoint["history"]) == checkpoint["epoch"] + 1
    resumed = nurdad(*TRAIN, "-o", "cut", "--resume", cwd=work)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(reference["dir"], cut)
    assert comparable_history(cut) == comparable_history(reference["dir"])
    assert (cut / "detector.json").read_text() == (reference["dir"] / "detector.json").read_text()
    assert not (cut / ".lock").exists()


def test_same_command_and_seed_give_identical_weights_and_scores(work, reference):
    assert_same_weights(reference["dir"], work / "again")
    scoring = [start("score", run, "toy.h5", "-o", f"{run}_scores.h5", cwd=work) for run in ("ref", "again")]
    for process in scoring:
        _, err = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, err
    with h5py.File(work / "ref_scores.h5") as a, h5py.File(work / "again_scores.h5") as b:
        assert set(a) == set(b) and {"nurd_md", "nurd_ml", "representation"} <= set(a)
        for key in a:
            np.testing.assert_array_equal(a[key][()], b[key][()], err_msg=key)


@pytest.mark.simulation
def test_kill_9_during_generation_leaves_no_partial_file_and_rerun_completes(tmp_path):
    args = ["generate", "--jets", "qcd=40", "--jets-per-shard", "10", "--seed", "5"]
    reference = start(*args, "-o", "whole/jets.h5", cwd=tmp_path)  # meanwhile, on the other core
    process = start(*args, "-o", "cut/jets.h5", cwd=tmp_path, start_new_session=True)
    out = tmp_path / "cut" / "jets.h5"
    wait_for(lambda: any(shard_dir(out).glob("qcd-*.h5")), process, "the first shard")
    os.killpg(process.pid, signal.SIGKILL)  # as a batch system kills the job's process group
    process.communicate(timeout=TIMEOUT)
    assert not out.exists()
    planned = {t.path.name: t.n_jets for t in plan_shards(GenerateConfig(jets={"qcd": 40}, jets_per_shard=10),
                                                            out)}
    for path in [*shard_dir(out).iterdir(), *out.parent.iterdir()]:
        if path.name in planned:
            assert len(JetFile(path)) == planned[path.name]  # visible means complete
        elif path != shard_dir(out):
            assert re.fullmatch(r"\..+\.tmp\d+", path.name), path
    rerun = nurdad(*args, "-o", "cut/jets.h5", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    _, err = reference.communicate(timeout=TIMEOUT)
    assert reference.returncode == 0, err
    with h5py.File(out) as a, h5py.File(tmp_path / "whole" / "jets.h5") as b:
        assert set(a) == set(b) and len(a["mass"]) == 40
        for key in a:
            np.testing.assert_array_equal(a[key][()], b[key][()], err_msg=key)
        assert a.attrs["config"] == b.attrs["config"]


# ------------------------------------------------------------------------------------ numerical guards
NAN_AT_EPOCH_2 = """
import sys
import nurdad.nurd.objective as objective
real, calls = objective.NurdObjective.train_step, []
def train_step(self, batch, batches):  # a NaN loss at epoch 2, batch 2
    calls.append(1)
    losses = real(self, batch, batches)
    return {**losses, "loss": float("nan")} if len(calls) == len(batches) + 3 else losses
objective.NurdObjective.train_step = train_step
from nurdad.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(work):
    result = subprocess.run([sys.executable, "-c", NAN_AT_EPOCH_2, "-q", *TRAIN, "-o", "nan"], cwd=work,
                            env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert pattern("nurdad: error: epoch 2, batch 2: loss became {...'loss': nan...}; the last good "
                   "checkpoint is nan/checkpoint.pt (lower train.lr or nurd.lambda_penalty)\n"
                   ).fullmatch(result.stderr)
    checkpoint = torch.load(work / "nan" / "checkpoint.pt", weights_only=False)
    assert checkpoint["epoch"] == 0 and len(checkpoint["history"]) == 1
    for tensor in checkpoint["objective"]["encoder"].values():
        assert torch.isfinite(tensor).all()
    assert not (work / "nan" / "model.pt").exists() and not (work / "nan" / ".lock").exists()


def test_ledoit_wolf_zero_on_two_valued_representation_still_fits():
    """Each class takes two values +-v: rank 1 and Ledoit-Wolf's estimate is exactly 0."""
    v = np.array([0.3, -1.2, 0.7, 2.0, -0.1])
    labels = np.repeat([0, 1], 50)
    sign = np.where(np.arange(100) % 2 == 0, 1.0, -1.0)[:, None]
    toy_reps = sign * v + 3.0 * labels[:, None]
    detector = MahalanobisDetector().fit(toy_reps, labels)
    assert 0 < detector.shrinkage_ < 1e-3
    assert np.isfinite(detector.score(toy_reps)).all()
    off_line = detector.score(toy_reps[:1] + np.array([[1.0, 0, 0, 0, 0]]))
    assert np.isfinite(off_line).all() and off_line[0] > detector.score(toy_reps).max()


def test_constant_representation_is_a_one_line_error():
    """A collapsed encoder (r(x) constant) has no covariance to estimate: say so."""
    with pytest.raises(SchemaError, match="zero variance within every class") as info:
        MahalanobisDetector().fit(np.full((40, 6), 2.5), np.repeat([0, 1], 20))
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------ atomicity
_WRITES = re.compile(
    r"""h5py\.File\([^)]*["'](w|w-|x|a|r\+)["']|torch\.save\(|\.savefig\(|open\([^)]*["'](w|wb|a|ab|x)["']"""
    r"""|\.open\(["'](w|wb|a)["']|np\.save|\.write_text\(|\.write_bytes\(|onnx\.save|\.to_csv\(|json\.dump\("""
)
_SAFE_TARGETS = ("tmp", "buffer", "os.devnull")  # atomic_path's temporary name, memory, /dev/null


def test_every_file_write_in_the_library_goes_through_a_temporary_name():
    """Lines that write files name atomic_path's `tmp` (or a handle opened on it two lines above)."""
    src = Path(__file__).resolve().parents[1] / "src" / "nurdad"
    offenders = []
    for path in sorted(src.rglob("*.py")):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if _WRITES.search(line) and not any(t in "\n".join(lines[max(0, number - 2):number + 1])
                                                for t in _SAFE_TARGETS):
                offenders.append(f"{path.relative_to(src)}:{number + 1}: {line.strip()}")
    assert not offenders, "write through nurdad.io.atomic_path:\n" + "\n".join(offenders)
