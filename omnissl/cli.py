"""The ``omnissl`` command line."""

from __future__ import annotations

import argparse
import errno
import fnmatch
import shutil
import sys
from pathlib import Path

from omnissl.errors import OmnisslError

EXAMPLES = """\
examples:
  omnissl plugins                               what is installed and what each plugin registers
  omnissl recipes                               every recipe of every installed plugin
  omnissl datasets eeg_folder                   a data set's options: type, default, meaning
  omnissl recipes show image/mae-digits         print a recipe
  omnissl recipes cp image/mae-vit-base my.yaml fork a recipe to edit it
  omnissl train image/mae-digits --out runs/digits
  omnissl train my.yaml data.root=/data/imagenet/train train.steps=50000 --out runs/in1k
  omnissl train my.yaml --out runs/in1k --resume   continue after a crash or a pre-emption
  omnissl train my.yaml optim.lr=1e-4 --out runs/in1k --resume --allow-recipe-change   change the recipe mid-run
  omnissl train my.yaml --out runs/in1k --nproc 8   8 processes (GPUs) on this machine; torchrun for several
  omnissl shard eeg/mae-demo --out shards/eeg   the recipe's samples as streaming shards, then train with
      omnissl train eeg/mae-demo data.name=shards data.path=shards/eeg --out runs/eeg   (or data.path=s3://...)
  omnissl export runs/ct --to monai-unetr --out unetr_vit.pt   encoder weights for MONAI's UNETR
  omnissl probe runs/digits                     linear + k-NN probes: pre-trained vs random vs baseline
  omnissl probe runs/digits --label-fractions 0.01,0.1,1   the same with 1 %, 10 %, all labels (+ PNG)
  omnissl probe runs/eeg data.root=/other/set --test data.root=/other/test   probes on data you choose
  omnissl probe runs/digits --all-checkpoints   probe every kept checkpoint (train.keep_checkpoints=N)
  omnissl compare runs/small runs/base --out cmp   validation loss vs probe score, Spearman's rho
  omnissl select runs/digits --by loss --keep 0.3 --out subset.txt   then train with data.subset=subset.txt
  omnissl new-plugin my_sensor --dir plugins   a new modality plugin to start from (docs/plugin-guide.md)
  omnissl finetune runs/digits --out runs/digits-ft   fine-tune end to end, pre-trained vs from scratch
  omnissl finetune runs/digits train.steps=500 --label-fractions 0.1,1 --out runs/digits-ft10
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnissl", description="Self-supervised pre-training for any modality, from a YAML recipe.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="pre-train from a recipe", epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("recipe", help="an installed recipe name (image/mae-digits) or a YAML file")
    train.add_argument("overrides", nargs="*", metavar="key.sub=value", help="override recipe keys")
    train.add_argument("--out", type=Path, help="run folder (default: runs/<recipe name>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--allow-recipe-change", action="store_true",
                       help="with --resume: apply a recipe that differs from the run's (recorded in "
                            "recipe_history.yaml); without it such a resume is refused")
    train.add_argument("--overwrite", action="store_true", help="start over in an --out that already holds a run")
    train.add_argument("--no-probe", action="store_true", help="skip the probes at the end")
    train.add_argument("--nproc", type=int, default=1, metavar="N",
                       help="train in N processes on this machine (one per GPU), through torch's elastic launcher: "
                            "the same as torchrun --standalone --nproc-per-node N -m omnissl train ...; for several "
                            "machines use torchrun (docs/distributed.md)")

    recipes = sub.add_parser("recipes", help="list, show or fork installed recipes")
    recipes.add_argument("action", nargs="?", default="ls", choices=["ls", "show", "cp"])
    recipes.add_argument("args", nargs="*", help="ls [PATTERN] | show NAME | cp NAME DEST")

    sub.add_parser("plugins", help="installed plugins, their versions and what they register")

    datasets = sub.add_parser("datasets", help="installed data sets, or one data set's options")
    datasets.add_argument("name", nargs="?", help="a data set name (data.name in a recipe)")
    datasets.add_argument("--markdown", action="store_true", help="as the markdown tables of the plugins' READMEs")

    probe = sub.add_parser("probe", help="probe the encoder of a run folder", epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    probe.add_argument("run_dir", type=Path)
    probe.add_argument("overrides", nargs="*", metavar="key.sub=value",
                       help="data.* and probe.* overrides: another labelled data set of the modality, its label "
                            "column, probe.pool")
    probe.add_argument("--test", nargs="+", metavar="key.sub=value", default=[],
                       help="a test set (data.* overrides): probes train on all of the data and are scored on it")
    probe.add_argument("--label-fractions", type=_fractions, default=(), metavar="F,F,...",
                       help="also probe with these fractions of the labelled training samples (0.01,0.1,1): "
                            "a table and label_efficiency.png")
    probe.add_argument("--out", type=Path, help="report file (default: RUN_DIR/probe.json)")
    probe.add_argument("--all-checkpoints", action="store_true",
                       help="probe every kept checkpoint (train.keep_checkpoints) in step order, appending one line "
                            "per checkpoint to RUN_DIR/probes.jsonl (or --out)")

    tune = sub.add_parser("finetune", help="fine-tune a run's encoder end to end, beside the same from scratch",
                          epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    tune.add_argument("run_dir", type=Path, help="a run folder written by omnissl train")
    tune.add_argument("overrides", nargs="*", metavar="key.sub=value",
                      help="override the fine-tuning recipe (train.steps=500 optim.layer_decay=0.65 "
                           "objective.mixup=0.8 data.root=...)")
    tune.add_argument("--out", type=Path, help="folder of the fine-tuning runs (default: RUN_DIR/finetune)")
    tune.add_argument("--label-fractions", type=_fractions, default=(1.0,), metavar="F,F,...",
                      help="fine-tune on these fractions of the labelled training samples (default 1)")
    tune.add_argument("--compare-scratch", action=argparse.BooleanOptionalAction, default=True,
                      help="also fine-tune a randomly initialised encoder of the same shape (default: on)")
    tune.add_argument("--resume", action="store_true", help="continue the fine-tuning runs in --out")
    tune.add_argument("--overwrite", action="store_true", help="start over in an --out that holds runs")

    compare = sub.add_parser("compare", help="validation loss against probe scores over runs and checkpoints "
                                              "(table, PNG, Spearman's rho)")
    compare.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN", help="run folders, probed first")
    compare.add_argument("--out", type=Path, required=True, help="folder for compare.md/.csv/.json and the PNG")
    compare.add_argument("--probe", choices=["linear", "knn"], default="linear", help="the probe score to correlate")

    select = sub.add_parser("select", help="choose a fraction of a run's training samples (data.subset)")
    select.add_argument("run_dir", type=Path, help="a run folder whose encoder and objective score the samples")
    select.add_argument("--by", choices=["loss", "redundancy", "random"], required=True,
                        help="loss: the run's objective over fixed masks; redundancy: near-duplicates in embedding "
                             "space (SemDeDup); random: the control")
    select.add_argument("--keep", type=float, required=True, help="the fraction of the training split to keep")
    select.add_argument("--out", type=Path, required=True, help="the subset file to write (for data.subset)")
    select.add_argument("--seed", type=int, default=0, help="seeds the masks, the k-means and the random draw")
    select.add_argument("--end", choices=["hard", "easy"], default="hard",
                        help="--by loss: keep the highest-loss (hard, default) or the lowest-loss samples")

    export = sub.add_parser("export", help="write a run's encoder in another library's layout")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--to", required=True, help="exporter name (omnissl plugins lists them)")
    export.add_argument("--out", type=Path, required=True, help="output file")

    # new-plugin: a plugin distribution to start a new modality from (omnissl/scaffold.py)
    new_plugin = sub.add_parser("new-plugin", help="write a new modality plugin (omnissl-NAME) to start from")
    new_plugin.add_argument("name", help="plugin name: lowercase letters, digits and underscores (ecg, my_sensor)")
    new_plugin.add_argument("--dir", type=Path, default=Path("."), help="folder to create omnissl-NAME in (default: .)")

    # shard: a recipe's samples as LitData shards, for data.name: shards (omnissl/shards.py)
    shard = sub.add_parser("shard", help="write a recipe's samples as streaming shards (train with data.name=shards)")
    shard.add_argument("recipe", help="an installed recipe name (eeg/mae-demo) or a YAML file")
    shard.add_argument("overrides", nargs="*", metavar="key.sub=value", help="override recipe keys (data.root=...)")
    shard.add_argument("--out", type=Path, required=True, help="the shard folder to write (local; copy it to an "
                                                               "object store afterwards to stream from there)")
    shard.add_argument("--chunk-bytes", default="64MB", help="size of each chunk file (default: 64MB)")
    shard.add_argument("--overwrite", action="store_true", help="replace the shards in --out")
    return parser


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of fractions (0.01,0.1,1)")
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions must be in (0, 1], got {text!r}")
    return tuple(sorted(set(values)))


def _cmd_plugins() -> None:
    from omnissl.plugins import get_registry

    registry = get_registry()
    for info in registry.plugins:
        print(f"{info.name} {info.version}  ({info.source})")
        for kind, names in info.registers.items():
            print(f"  {kind:<11} {', '.join(sorted(names))}")
        if info.recipe_dirs:
            count = sum(len(list(Path(d).glob('*/*.yaml'))) for d in info.recipe_dirs)
            print(f"  {'recipes':<11} {count} in {', '.join(str(d) for d in info.recipe_dirs)}")


def _cmd_datasets(name: str | None, markdown: bool) -> None:
    from omnissl.docs import dataset_markdown, dataset_text, summary_line
    from omnissl.plugins import get_registry

    registry = get_registry()
    names = [name] if name else registry.names("datasets")
    if name:
        registry.get("datasets", name)  # an unknown name: the registry's error, with the closest name
    if markdown:
        print(dataset_markdown(registry, names))
    elif name:
        print(dataset_text(registry, name))
    else:
        width = max(len(n) for n in names)
        for n in names:
            print(f"{n:<{width}}  {summary_line(registry.get('datasets', n))}")
        print("\nomnissl datasets NAME shows a data set's options (type, default, meaning).")


def _cmd_recipes(action: str, args: list[str]) -> None:
    from omnissl.plugins import get_registry
    from omnissl.recipe import header_command, recipe_index, resolve_path

    registry = get_registry()
    if action == "ls":
        pattern = args[0] if args else "*"
        index = {k: v for k, v in recipe_index(registry).items() if fnmatch.fnmatch(k, pattern)}
        if not index:
            print("no recipes installed" if pattern == "*" else f"no recipe matches {pattern!r}")
        width = max((len(k) for k in index), default=0)
        for name, path in index.items():
            print(f"{name:<{width}}  {header_command(path) or path}")
        return
    if action == "show":
        if len(args) != 1:
            raise OmnisslError("usage: omnissl recipes show NAME")
        print(resolve_path(args[0], registry).read_text(), end="")
        return
    if len(args) != 2:
        raise OmnisslError("usage: omnissl recipes cp NAME DEST")
    source, dest = resolve_path(args[0], registry), Path(args[1])
    if dest.is_dir():
        dest = dest / source.name
    if dest.exists():
        raise OmnisslError(f"{dest} already exists; pick another name or delete it first")
    shutil.copyfile(source, dest)
    print(f"copied {args[0]} to {dest}; run it with: omnissl train {dest}")


def _cmd_train(args: argparse.Namespace) -> int:
    import os

    from omnissl.plugins import get_registry
    from omnissl.recipe import load_recipe

    registry = get_registry()
    recipe = load_recipe(args.recipe, args.overrides, registry)  # a bad recipe is refused before any launch
    from omnissl.train import train  # the loop (and scikit-learn, below) load after the recipe passed
    out = args.out or Path("runs") / Path(args.recipe).stem
    if args.allow_recipe_change and not args.resume:
        raise OmnisslError("--allow-recipe-change applies to --resume only")
    if args.nproc != 1:
        if "LOCAL_RANK" in os.environ:
            raise OmnisslError("--nproc starts processes itself; under torchrun leave it out")
        from omnissl.train.distributed import launch

        flags = [flag for flag, on in (("--resume", args.resume), ("--overwrite", args.overwrite),
                                       ("--allow-recipe-change", args.allow_recipe_change),
                                       ("--no-probe", args.no_probe)) if on]
        return launch(["train", args.recipe, *args.overrides, "--out", str(out), *flags], args.nproc)
    rank = int(os.environ.get("RANK", 0))
    try:
        train(recipe, registry, out, resume=args.resume, overwrite=args.overwrite,
              allow_recipe_change=args.allow_recipe_change)
    except OmnisslError as exc:
        if rank:  # under torchrun: say which process, since each prints its own
            raise OmnisslError(f"(process {rank}) {exc}") from None
        raise
    if rank:  # the main process alone writes the run folder and runs the probes
        return 0
    written = [name for name in ("data.json", "metrics.jsonl", "checkpoints/", "loss_curve.png",
                                 "reconstruction.png") if (out / name.rstrip("/")).exists()]
    print(f"\nrun folder: {out}  ({', '.join(written)})")
    if recipe.probe.enabled and not args.no_probe:
        from omnissl.eval.probe import format_table  # scikit-learn loads only when the probes run
        from omnissl.eval.run import probe_run

        # Training succeeded: a probe that cannot run (no labels) is a note, not a failure.
        report = probe_run(out, registry, unlabelled="skip")
        print(format_table(report))
        print(f"probe results: {out / 'probe.json'}")
    return 0


def _cmd_probe(args: argparse.Namespace) -> None:
    from omnissl.eval.probe import format_curve, format_table
    from omnissl.eval.run import probe_run
    from omnissl.plugins import get_registry

    if args.all_checkpoints:
        from omnissl.eval.probe import PROBES_LOG, format_checkpoints, probe_checkpoints

        if args.test or args.label_fractions:
            raise OmnisslError("--all-checkpoints probes on the run's own split; it takes neither --test nor "
                               "--label-fractions")
        out = args.out or args.run_dir / PROBES_LOG
        print(format_checkpoints(probe_checkpoints(args.run_dir, get_registry(), args.overrides, out)))
        print(f"appended to: {out}")
        return
    out = args.out or args.run_dir / "probe.json"
    report = probe_run(args.run_dir, get_registry(), overrides=args.overrides, test=args.test,
                       fractions=args.label_fractions, out=out)
    print(format_table(report))
    if "label_fractions" in report:
        print("\nlabel efficiency (probes on a fraction of the labelled training samples):")
        print(format_curve(report["label_fractions"], report["metric"]))
        print(f"plot: {out.with_name('label_efficiency.png')}")
    print(f"probe results: {out}")


def _cmd_finetune(args: argparse.Namespace) -> None:
    from omnissl.eval.finetune import RESULT, finetune, format_report
    from omnissl.plugins import get_registry

    out = args.out or args.run_dir / "finetune"
    report = finetune(args.run_dir, out, get_registry(), args.overrides, fractions=args.label_fractions,
                      compare_scratch=args.compare_scratch, resume=args.resume, overwrite=args.overwrite)
    print(format_report(report))
    print(f"fine-tuning results: {out / RESULT}")


def _cmd_compare(args: argparse.Namespace) -> None:
    from omnissl.research.compare import compare_runs, markdown, write_comparison

    comparison = compare_runs(args.run_dirs, args.probe)
    written = write_comparison(comparison, args.out)
    print(markdown(comparison), end="")
    print(f"written: {', '.join(str(p) for p in written)}")


def _cmd_select(args: argparse.Namespace) -> None:
    from omnissl.cache import write_text
    from omnissl.research.select import select, subset_text

    chosen = select(args.run_dir, args.by, args.keep, args.seed, args.end)
    command = f"omnissl select {args.run_dir} --by {args.by} --keep {args.keep:g} --seed {args.seed}" + (
        f" --end {args.end}" if args.by == "loss" else "")
    write_text(args.out, subset_text(chosen, command), "subset file")
    print(f"kept {len(chosen.ids)} of {chosen.info['train_samples']} training samples ({chosen.id_kind}) in "
          f"{args.out}; train on them with data.subset={args.out}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # `train RECIPE --out DIR key=value`: overrides after an option arrive here.
    takes = ("train", "probe", "finetune", "shard")
    if extra and args.command in takes and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "train":
            return _cmd_train(args)
        elif args.command == "recipes":
            _cmd_recipes(args.action, args.args)
        elif args.command == "plugins":
            _cmd_plugins()
        elif args.command == "datasets":
            _cmd_datasets(args.name, args.markdown)
        elif args.command == "probe":
            _cmd_probe(args)
        elif args.command == "finetune":
            _cmd_finetune(args)
        elif args.command == "compare":
            _cmd_compare(args)
        elif args.command == "select":
            _cmd_select(args)
        elif args.command == "export":
            from omnissl.eval.run import export_run
            from omnissl.plugins import get_registry

            print(f"wrote {export_run(args.run_dir, args.to, args.out, get_registry())}")
        elif args.command == "shard":
            from omnissl.shards import shard_command

            print(shard_command(args.recipe, args.overrides, args.out, args.chunk_bytes, args.overwrite))
        elif args.command == "new-plugin":
            from omnissl.scaffold import new_plugin, next_steps, plugin_names

            print(next_steps(new_plugin(args.name, args.dir), plugin_names(args.name)))
        else:
            parser.print_help()
            return 2
    except OmnisslError as exc:
        print(f"omnissl: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `omnissl recipes | head`: the reader left; no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" while writing {exc.filename}" if exc.filename else ""
        print(f"omnissl: error: no space left on the disk{where}; free some space, then continue with --resume",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("omnissl: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
