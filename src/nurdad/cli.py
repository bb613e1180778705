"""The `nurdad` command: a thin layer over the library. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys

from nurdad import __version__
from nurdad.config import deep_merge, from_dict, load_toml, nest_flags
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
    data_sub = _subcommands(p, dest="data_command", metavar="{info,merge}")
    info = data_sub.add_parser("info", help="counts and mass quantiles per process")
    info.add_argument("files", nargs="+", help="jet files, directories or globs")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--check", action="store_true", help="also scan every pixel and mass for NaN/inf")
    info.set_defaults(func=_cmd_data_info)
    merge = data_sub.add_parser("merge", help="merge jet files / shard directories into one file")
    merge.add_argument("inputs", nargs="+", help="jet files, directories or globs")
    merge.add_argument("--out", "-o", required=True, help="merged output file")
    merge.set_defaults(func=_cmd_data_merge)


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
    p.add_argument("--schedule", choices=("fast", "reference"), dest="nurd.schedule",
                   help="critic schedule (default fast)")
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


_TRAIN_FLAGS = ("model", "nurd.lambda_penalty", "nurd.schedule", "nurd.critic_steps", "epochs", "batch_size",
                "lr", "seed", "backgrounds", "nuisance", "weights.method", "val_fraction", "test_fraction",
                "device")


def _cmd_train(args) -> None:
    from nurdad.distributed import distributed_session
    from nurdad.training import train

    config = train_config_from_args(args, _TRAIN_FLAGS)
    with distributed_session(config.device):
        summary = train(config, args.data, args.out, resume=args.resume, show_progress=not args.quiet)
    line = (f"{args.out}: {summary['model']}, best epoch {summary['best_epoch']}, "
            f"{summary['parameters']} parameters")
    if "fresh_critic" in summary:
        line += f", fresh-critic dependence {summary['fresh_critic']['info_estimate']:.4f} nats"
    print(line)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nurdad", description="Robust, fast jet anomaly detection with NuRD.",
    )
    parser.add_argument("--version", action="version", version=f"nurdad {__version__}")
    _add_verbosity(parser, default=False)
    sub = _subcommands(parser, dest="command", metavar="COMMAND")
    _add_generate(sub)
    _add_data(sub)
    _add_train(sub)
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
        print(f"nurdad: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nurdad: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
