"""The `nurdad` command: a thin layer over the library. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys

from nurdad import __version__
from nurdad.config import deep_merge, from_dict, load_toml, nest_flags
from nurdad.demo import DEMO_LAMBDA
from nurdad.errors import ConfigError, NurdadError

log = logging.getLogger("nurdad")


def _parse_jets(items: list[str] | None) -> dict[str, int] | None:
    if not items:
        return None
    jets = {}
    for item in items:
        name, sep, count = item.partition("=")
        if not sep or not count.strip().isdigit():
            raise ConfigError(f"--jets: expected PROCESS=NUMBER like qcd=2000, got {item!r}")
        jets[name.strip()] = int(count)
    return jets


# ---------------------------------------------------------------------------------------------- generate
def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="simulate jets (Pythia8 + FastJet) into an HDF5 dataset")
    p.add_argument("--out", "-o", required=True, help="output HDF5 file")
    p.add_argument("--jets", action="append", metavar="PROCESS=N",
                   help="jets per process, repeatable (default qcd=2000 wz=2000 top=500)")
    p.add_argument("--config", help="TOML file with [generate], [generate.simulation], [generate.images]")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--shard", metavar="I/N", help="make only shards i, i+N, ... (batch farms); no merge")
    p.add_argument("--seed", type=int, help="base random seed (default 1)")
    p.add_argument("--jets-per-shard", type=int, help="jets per shard (default 500)")
    p.add_argument("--keep-shards", action="store_true", help="keep shard files after merging")
    p.add_argument("--sqrt-s", type=float, dest="simulation.sqrt_s_gev", help="collision energy [GeV]")
    p.add_argument("--pt-min", type=float, dest="simulation.pt_min_gev", help="jet pT window low [GeV]")
    p.add_argument("--pt-max", type=float, dest="simulation.pt_max_gev", help="jet pT window high [GeV]")
    p.add_argument("--eta-max", type=float, dest="simulation.abs_eta_max", help="jet |eta| limit")
    p.add_argument("--jet-radius", type=float, dest="simulation.jet_radius", help="anti-kT R")
    p.add_argument("--isr", action=argparse.BooleanOptionalAction, dest="simulation.isr", default=None)
    p.add_argument("--mpi", action=argparse.BooleanOptionalAction, dest="simulation.mpi", default=None)
    p.add_argument("--truth-match", action=argparse.BooleanOptionalAction,
                   dest="simulation.require_truth_match", default=None,
                   help="keep only truth-matched W/Z/top/H jets (default on)")
    p.add_argument("--image-size", type=int, dest="images.size", help="pixels per side (default 50)")
    for step in ("center", "rotate", "flip", "normalize"):
        p.add_argument(f"--{step}", action=argparse.BooleanOptionalAction, dest=f"images.{step}",
                       default=None, help=f"image preprocessing step '{step}' (default on)")
    p.set_defaults(func=_cmd_generate)


def _cmd_generate(args) -> None:
    from nurdad.generate import GenerateConfig, generate

    flags = {k: v for k, v in vars(args).items() if k.startswith(("simulation.", "images."))}
    flags.update(seed=args.seed, jets_per_shard=args.jets_per_shard)
    values = deep_merge(load_toml(args.config).get("generate", {}), nest_flags(flags))
    jets = _parse_jets(args.jets)
    if jets is not None:
        values["jets"] = jets
    config = from_dict(GenerateConfig, values, "generate")
    path = generate(config, args.out, workers=args.workers, shard=args.shard, keep_shards=args.keep_shards,
                    show_progress=not args.quiet)
    if path is not None:
        print(path)


# -------------------------------------------------------------------------------------------------- data
def _add_data(sub) -> None:
    p = sub.add_parser("data", help="inspect and merge jet datasets")
    data_sub = _subcommands(p, dest="data_command", metavar="{info,merge,import}")
    info = data_sub.add_parser("info", help="counts and mass quantiles per process")
    info.add_argument("files", nargs="+", help="jet files, directories or globs")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--check", action="store_true", help="also scan every pixel and mass for NaN/inf")
    info.set_defaults(func=_cmd_data_info)
    merge = data_sub.add_parser("merge", help="merge jet files / shard directories into one file")
    merge.add_argument("inputs", nargs="+", help="jet files, directories or globs")
    merge.add_argument("--out", "-o", required=True, help="merged output file")
    merge.set_defaults(func=_cmd_data_merge)
    _add_data_import(data_sub)


def _cmd_data_info(args) -> None:
    from nurdad.data import dataset_info, open_dataset

    dataset = open_dataset(args.files)
    if args.check:
        dataset.validate()
    info = dataset_info(dataset)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"{info['jets']} jets, images {'x'.join(map(str, info['image_shape']))}, "
          f"{len(info['files'])} file(s)")
    print(f"{'process':<10}{'jets':>8}   mass quantiles [GeV] 10/25/50/75/90%")
    for name, row in info["processes"].items():
        q = row["mass_quantiles_gev"]
        print(f"{name:<10}{row['jets']:>8}   " + " / ".join(f"{q[k]:.1f}" for k in q))


def _cmd_data_merge(args) -> None:
    from nurdad.data import expand_paths, merge_files

    print(merge_files(expand_paths(args.inputs), args.out))


def _add_data_import(data_sub) -> None:
    from nurdad.importers import IMPORTERS, KINEMATICS

    p = data_sub.add_parser(
        "import", help="convert a public jet dataset into a nurdad jet file (same images as generate)",
        description="formats:\n" + "\n".join(f"  {name}: {imp.summary}" for name, imp in IMPORTERS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("format", choices=list(IMPORTERS), metavar="FORMAT", help=", ".join(IMPORTERS))
    p.add_argument("source", metavar="IN", help="source file, or a directory of them")
    p.add_argument("out", metavar="OUT", help="nurdad jet file to write")
    p.add_argument("--max-jets", type=int, metavar="N", help="stop after N jets (default all)")
    p.add_argument("--kinematics", choices=KINEMATICS, default="dataset",
                   help="jet mass/pt/eta: the source's values where it gives them (dataset, default) or "
                        "the four-vector sum of the imported constituents (constituents)")
    p.add_argument("--config", metavar="TOML", help="generate config whose [generate.images] sets the images")
    p.add_argument("--image-size", type=int, dest="images.size", metavar="N",
                   help="pixels per side (default 50)")
    p.add_argument("--half-width", type=float, dest="images.half_width", metavar="W",
                   help="image half width in delta-eta and delta-phi (default 0.8)")
    for step in ("center", "rotate", "flip", "normalize"):
        p.add_argument(f"--{step}", action=argparse.BooleanOptionalAction, dest=f"images.{step}",
                       default=None, help=f"image preprocessing step '{step}' (default on)")
    p.set_defaults(func=_cmd_data_import)


def _cmd_data_import(args) -> None:
    from nurdad.images import ImageConfig
    from nurdad.importers import import_dataset

    flags = nest_flags({k: v for k, v in vars(args).items() if k.startswith("images.")})
    values = deep_merge(load_toml(args.config).get("generate", {}).get("images", {}), flags.get("images", {}))
    info = import_dataset(args.format, args.source, args.out, from_dict(ImageConfig, values, "images"),
                          max_jets=args.max_jets, kinematics=args.kinematics)
    counts = ", ".join(f"{name} {n}" for name, n in info["processes"].items())
    print(f"{info['output']}: {info['jets']} jets ({counts}) from {len(info['files'])} file(s)")


# ------------------------------------------------------------------------------------------------- train
def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train NuRD (or the autoencoder baseline) into a run directory")
    p.add_argument("--data", "-d", required=True, nargs="+", help="jet files, directories or globs")
    p.add_argument("--out", "-o", required=True, help="run directory")
    p.add_argument("--config", help="TOML file with a [train] table (and [train.nurd], ...)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--model", choices=("nurd", "ae"), help="nurd (default) or ae (autoencoder baseline)")
    p.add_argument("--lambda", type=float, dest="nurd.lambda_penalty",
                   help="dependence penalty weight (0 = plain classifier; default 1)")
    p.add_argument("--dependence", choices=("disco", "critic"), dest="nurd.dependence",
                   help="dependence penalty: disco (default, closed form) or critic (adversarial)")
    p.add_argument("--schedule", choices=("fast", "reference"), dest="nurd.schedule",
                   help="critic schedule with --dependence critic (default fast)")
    p.add_argument("--critic-steps", type=int, dest="nurd.critic_steps", help="fast: critic steps per step")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--backgrounds", nargs="+", help="background processes = classes (default qcd wz)")
    p.add_argument("--nuisance", nargs="+", help="nuisance columns (default mass)")
    p.add_argument("--weights", choices=("exact", "classifier"), dest="weights.method",
                   help="how p(y|z) is estimated for the importance weights")
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--test-fraction", type=float)
    p.add_argument("--device", help="cpu (default), cuda or cuda:N")
    p.set_defaults(func=_cmd_train)


def train_config_from_args(args, keys: tuple[str, ...]):
    """TrainConfig from --config's [train] table overridden by the flags named in `keys`."""
    from nurdad.training import TrainConfig

    flags = {k: getattr(args, k, None) for k in keys}
    return from_dict(TrainConfig, deep_merge(load_toml(args.config).get("train", {}), nest_flags(flags)),
                     "train")


_TRAIN_FLAGS = ("model", "nurd.lambda_penalty", "nurd.dependence", "nurd.schedule", "nurd.critic_steps",
                "epochs", "batch_size", "lr", "seed", "backgrounds", "nuisance", "weights.method",
                "val_fraction", "test_fraction", "device")


def _cmd_train(args) -> None:
    from nurdad.distributed import distributed_session
    from nurdad.training import train

    config = train_config_from_args(args, _TRAIN_FLAGS)
    with distributed_session(config.device):
        summary = train(config, args.data, args.out, resume=args.resume, show_progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) > 0:
        return  # rank 0 speaks for a torchrun job
    line = (f"{args.out}: {summary['model']}, best epoch {summary['best_epoch']}, "
            f"{summary['parameters']} parameters")
    if "fresh_critic" in summary:
        line += f", fresh-critic dependence {summary['fresh_critic']['info_estimate']:.4f} nats"
    print(line)


# ---------------------------------------------------------------------------------------------- evaluate
def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score runs on jets: AUROC, rejection, mass sculpting, robustness",
                       usage="nurdad evaluate RUN_DIR... --data FILE... [-o metrics.json]")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished run directories")
    p.add_argument("--data", "-d", required=True, nargs="+",
                   help="jet files (on the runs' own training data only held-out jets are used)")
    p.add_argument("--out", "-o", default="metrics.json",
                   help="metrics JSON (default metrics.json); per-jet scores go next to it as .npz")
    p.add_argument("--anomalies", nargs="+", help="anomaly processes (default: all non-background ones)")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args) -> None:
    from nurdad.evaluate import evaluate_runs, format_table, scores_path

    metrics = evaluate_runs(args.run_dirs, args.data, args.anomalies, out=args.out)
    print(format_table(metrics))
    print(f"metrics: {args.out}, per-jet scores: {scores_path(args.out)}")


# ------------------------------------------------------------------------------------------------- sweep
def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="train NuRD at several lambdas and the AE, evaluate, plot the trade-off")
    p.add_argument("--data", "-d", required=True, nargs="+", help="jet files, directories or globs")
    p.add_argument("--out", "-o", required=True, help="sweep directory (rerun the command to resume)")
    p.add_argument("--lambdas", type=float, nargs="+", default=None,
                   help="penalty weights (default 0 0.01 0.03 0.1 0.3 1)")
    p.add_argument("--config", help="TOML file with a [train] table: the base of every run")
    p.add_argument("--no-ae", action="store_true", help="skip the autoencoder reference")
    p.add_argument("--anomalies", nargs="+", help="anomaly processes (default: all non-background ones)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--dependence", choices=("disco", "critic"), dest="nurd.dependence",
                   help="dependence penalty: disco (default, closed form) or critic (adversarial)")
    p.add_argument("--schedule", choices=("fast", "reference"), dest="nurd.schedule",
                   help="critic schedule with --dependence critic (default fast)")
    p.add_argument("--device", help="cpu (default), cuda or cuda:N")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args) -> None:
    from nurdad.sweep import DEFAULT_LAMBDAS, format_sweep, run_sweep

    config = train_config_from_args(args, ("epochs", "batch_size", "lr", "seed", "nurd.dependence",
                                           "nurd.schedule", "device"))
    sweep = run_sweep(args.data, args.out, config, args.lambdas or DEFAULT_LAMBDAS, with_ae=not args.no_ae,
                      anomalies=args.anomalies, show_progress=not args.quiet)
    print(format_sweep(sweep))
    print(f"{args.out}/sweep.json, {args.out}/tradeoff.png, {args.out}/metrics.json")


# ------------------------------------------------------------------------------------------------ report
def _add_report(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page from run and sweep directories")
    p.add_argument("inputs", nargs="*", metavar="RUN_DIR_OR_SWEEP_DIR")
    p.add_argument("--out", "-o", default="report.html", help="HTML file (default report.html)")
    p.add_argument("--metrics", help="show this evaluation (from nurdad evaluate) instead of making one")
    p.add_argument("--data", "-d", nargs="+",
                   help="evaluate on these jets when needed (default: the runs' training data)")
    p.add_argument("--title", default="nurdad report")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> None:
    from nurdad.report import build_report

    print(build_report(args.inputs, args.out, metrics_path=args.metrics, data=args.data, title=args.title))


# -------------------------------------------------------------------------------------------------- demo
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="simulate a small dataset, train NuRD / classifier / AE, write a report")
    p.add_argument("--out", "-o", default="demo", help="output folder (default demo; rerun to resume)")
    p.add_argument("--jets-per-class", type=int,
                   help="background jets per class (default 1500; top gets a third, hbb a fifth)")
    p.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    p.add_argument("--workers", type=int, default=2, help="simulation processes (default 2)")
    p.add_argument("--lambda", type=float, dest="lambda_penalty", default=DEMO_LAMBDA,
                   help=f"NuRD penalty weight (default {DEMO_LAMBDA:g}; lambda = 0 is trained as well)")
    p.add_argument("--data", "-d", help="an existing jet file: skip the simulation")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> None:
    import time

    from nurdad.demo import demo_jets, run_demo

    started = time.perf_counter()
    jets = demo_jets(args.jets_per_class) if args.jets_per_class else None
    report = run_demo(args.out, jets, epochs=args.epochs, workers=args.workers, data=args.data,
                      lambda_penalty=args.lambda_penalty, show_progress=not args.quiet)
    print(f"demo finished in {(time.perf_counter() - started) / 60:.1f} min; open the report: {report}")


# ------------------------------------------------------------------------------------------------- score
_HEADLINE_SCORES = ("nurd_md", "nurd_ml", "ae_mse")


def _add_score(sub) -> None:
    p = sub.add_parser("score", help="per-jet anomaly scores of jet files with a trained run, to HDF5",
                       usage="nurdad score RUN_DIR FILE... -o OUT.h5 [--batch-size N]")
    p.add_argument("run_dir", metavar="RUN_DIR", help="finished run directory (nurdad train)")
    p.add_argument("files", nargs="+", metavar="FILE", help="jet files, directories or globs")
    p.add_argument("--out", "-o", required=True, help="HDF5 file of per-jet scores")
    p.add_argument("--batch-size", type=int, default=1024, help="jets per forward pass (default 1024)")
    p.set_defaults(func=_cmd_score)


def _cmd_score(args) -> None:
    from pathlib import Path

    from nurdad.data import open_dataset
    from nurdad.errors import RunDirError
    from nurdad.metrics import auroc
    from nurdad.scoring import load_run, score_to_file

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected an integer >= 1, got {args.batch_size}")
    if not Path(args.run_dir).is_dir():
        raise RunDirError(f"{args.run_dir}: no such run directory")
    run = load_run(args.run_dir)
    dataset = open_dataset(args.files)
    dataset.validate()  # NaN/negative pixels: name the file, not the representation
    scores = score_to_file(run, dataset, args.out, args.batch_size)
    print(args.out)
    process = dataset.column("process")
    background = process[:, None] == list(run.config.backgrounds)
    is_background = background.any(axis=1)
    if not is_background.any():
        return
    for name in sorted(set(process[~is_background])):
        values = [f"{key} {auroc(scores[key][is_background], scores[key][process == name]):.4f}"
                  for key in _HEADLINE_SCORES if key in scores]
        print(f"AUROC {name} ({(process == name).sum()} jets) vs {'+'.join(run.config.backgrounds)} "
              f"({is_background.sum()} jets): " + ", ".join(values))


# ------------------------------------------------------------------------------------------------ export
def _add_export(sub) -> None:
    from nurdad.export import EXPORTERS

    p = sub.add_parser("export", help="export a NuRD run: ONNX graph, hls4ml firmware (C++ emulation)",
                       usage="nurdad export RUN_DIR [--onnx] [--hls4ml] [-o DIR] [--precision P]... "
                             "[--data FILE...]")
    p.add_argument("run_dir", metavar="RUN_DIR", help="finished NuRD run directory")
    for name in EXPORTERS:
        p.add_argument(f"--{name}", action="store_true", dest=f"format_{name}",
                       help=f"write the {name} export")
    p.add_argument("--out", "-o", help="output directory (default RUN_DIR/export); export.json records all")
    p.add_argument("--precision", action="append", dest="precisions", metavar="P",
                   help="hls4ml: fixed-point candidate, repeatable (default ap_fixed<16,6>, <18,8>, "
                        "<24,10>); the narrowest keeping the AUROC within --max-auroc-drop is chosen")
    p.add_argument("--data", "-d", nargs="+",
                   help="hls4ml: jets to calibrate and measure the AUROC on (default the run's data; "
                        "on training data only its test split and the anomalies)")
    p.add_argument("--max-jets", type=int, dest="max_jets_per_process",
                   help="hls4ml: jets per process run through the emulation (default 200)")
    p.add_argument("--max-auroc-drop", type=float, help="hls4ml: allowed AUROC loss vs float (default 0.01)")
    p.add_argument("--opset", type=int, help="ONNX opset (default 18)")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> None:
    from nurdad.export import EXPORTERS, ExportConfig, export_run, exporter

    formats = [name for name in EXPORTERS if getattr(args, f"format_{name}")]
    if not formats:
        raise ConfigError(f"export: choose at least one of {', '.join('--' + n for n in EXPORTERS)}")
    values = {key: getattr(args, key) for key in
              ("precisions", "data", "max_jets_per_process", "max_auroc_drop", "opset")}
    config = from_dict(ExportConfig, {k: v for k, v in values.items() if v is not None}, "export")
    record = export_run(args.run_dir, formats, args.out, config)
    for name in formats:
        print(exporter(name).summary(record[name]))
    print(f"record: {os.path.join(args.out or os.path.join(args.run_dir, 'export'), 'export.json')}")


# ---------------------------------------------------------------------------------------------- main
def _add_verbosity(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="no progress bars, warnings only")


def _subcommands(parser: argparse.ArgumentParser, **kwargs):
    """Subparsers whose commands also accept -v/-q after the command name."""
    common = argparse.ArgumentParser(add_help=False)
    _add_verbosity(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(required=True, **kwargs)
    sub.add_parser = functools.partial(sub.add_parser, parents=[common])
    return sub


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors on one line, like every other nurdad error (batch logs grep well); exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="nurdad", description="Robust, fast jet anomaly detection with NuRD.",
    )
    parser.add_argument("--version", action="version", version=f"nurdad {__version__}")
    _add_verbosity(parser, default=False)
    sub = _subcommands(parser, dest="command", metavar="COMMAND")
    _add_generate(sub)
    _add_data(sub)
    _add_train(sub)
    _add_score(sub)
    _add_evaluate(sub)
    _add_sweep(sub)
    _add_report(sub)
    _add_demo(sub)
    _add_export(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        args.func(args)
    except NurdadError as exc:
        print(f"nurdad: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable path, full disk, ...: the user's environment, not a bug
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"nurdad: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nurdad: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
