"""`nurdad demo`: the whole pipeline on a small dataset, in about ten minutes on two cores.

Steps: simulate jets with Pythia8 (`nurdad.generate`; or take an existing file), train NuRD
(lambda > 0), the lambda = 0 classifier and the autoencoder with few epochs (`nurdad.sweep`),
evaluate them and write the HTML report. Everything lands in one folder and rerunning the command
resumes: finished shards and runs are skipped.

Default size: Pythia makes ~50 QCD, ~40 truth-matched W/Z, ~55 top jets per second and core, so
1500 + 1500 background jets and 500 top + 300 H->bb anomalies take ~1 minute on 2 workers; the three
trainings and the evaluation take the rest.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from nurdad.errors import ConfigError

log = logging.getLogger(__name__)

DEMO_JETS = {"qcd": 1500, "wz": 1500, "top": 500, "hbb": 300}
DEMO_EPOCHS = 8
DEMO_BATCH_SIZE = 64          # ~30 encoder steps per epoch on the demo's ~1800 training jets
DEMO_LAMBDA = 0.3             # as configs/paper.toml: the smallest lambda with |corr| <= 0.01 on dev
DEMO_JETS_PER_SHARD = 250     # small shards balance the workers
_NOTE = ("Demo run on a small dataset ({counts}), trained for {epochs} epoch(s): the numbers are noisy "
         "(a few hundred test jets per class give AUROC uncertainties of a few percent and unstable "
         "1/JSD at 1%) and the models are under-trained. Use this page to check the pipeline, not to "
         "judge the method; run `nurdad generate` + `nurdad sweep` on more jets for that.")


def demo_jets(per_class: int) -> dict[str, int]:
    """Jets per process for `per_class` background jets each: top gets a third, hbb a fifth."""
    if per_class < 1:
        raise ConfigError(f"--jets-per-class: expected a positive number, got {per_class}")
    return {"qcd": per_class, "wz": per_class, "top": max(2, per_class // 3),
            "hbb": max(2, per_class // 5)}


def run_demo(out: str | os.PathLike = "demo", jets: dict[str, int] | None = None,
             epochs: int = DEMO_EPOCHS, workers: int = 2, data: str | os.PathLike | None = None,
             generate_config=None, train_config=None, lambda_penalty: float = DEMO_LAMBDA,
             show_progress: bool = True) -> Path:
    """Run the demo into `out` and return the report's path (``out/report.html``).

    `jets` (default `DEMO_JETS`) or a full `generate_config` (GenerateConfig) sets the simulation;
    `data`: an existing jet file instead (no simulation). `train_config` (TrainConfig, default one
    with batch size `DEMO_BATCH_SIZE`) is the base of the three trainings, run for `epochs`.
    """
    from nurdad.data import dataset_info, open_dataset
    from nurdad.report import build_report
    from nurdad.sweep import run_sweep
    from nurdad.training import TrainConfig

    out = Path(out)
    if not lambda_penalty > 0:
        raise ConfigError(f"demo lambda: expected > 0 (lambda = 0 is trained anyway), got {lambda_penalty}")
    if data is None:
        from nurdad.generate import GenerateConfig, generate

        config = generate_config or GenerateConfig(jets=dict(jets or DEMO_JETS),
                                                   jets_per_shard=DEMO_JETS_PER_SHARD)
        log.info("demo: simulating %s with %d workers", dict(config.jets), workers)
        data = generate(config, out / "jets.h5", workers=workers, show_progress=show_progress)
    train_config = dataclasses.replace(train_config or TrainConfig(batch_size=DEMO_BATCH_SIZE),
                                       epochs=epochs)
    log.info("demo: training NuRD (lambda %g), the lambda = 0 classifier and the AE", lambda_penalty)
    run_sweep(data, out / "runs", train_config, lambdas=(0.0, lambda_penalty), with_ae=True,
              show_progress=show_progress)
    counts = dataset_info(open_dataset(data))["processes"]
    note = _NOTE.format(counts=", ".join(f"{n['jets']} {p}" for p, n in counts.items()), epochs=epochs)
    return build_report([out / "runs"], out / "report.html", note=note, title="nurdad demo report")
