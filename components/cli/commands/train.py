"""``cataract-cam train``: train a checkpoint on a labelled image folder; its card goes beside it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from components.cli.common import EXIT_OK, Command, UsageError, add_json_option, add_model_option, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    from models.training.train import THRESHOLD_RULES, TrainConfig

    d = TrainConfig()
    p.add_argument("data", metavar="DATA", help="folder with one sub-folder per class (cataract/, normal/)")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.pt); a card goes beside it")
    p.add_argument("--val", default=None, metavar="DIR", help="validation folder (default: a grouped split of DATA)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate of the cosine schedule")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--input-size", type=int, default=d.input_size)
    p.add_argument("--warmup-size", type=int, default=None,
                   help="smaller input for the first --warmup-size-epochs epochs (faster on a CPU)")
    p.add_argument("--warmup-size-epochs", type=int, default=0)
    p.add_argument("--patience", type=int, default=d.patience, help="epochs without a better validation loss")
    p.add_argument("--init", default="scratch", metavar="scratch|imagenet|CKPT",
                   help="starting weights: random, torchvision's ImageNet backbone (downloaded into torch's "
                        "cache if missing), or a checkpoint (default: scratch)")
    p.add_argument("--threshold-rule", default=d.threshold_rule, choices=THRESHOLD_RULES)
    p.add_argument("--no-calibrate", action="store_true", help="skip temperature scaling")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--attention-weight", type=float, default=0.0,
                   help="weight of the pupil-attention guidance term (needs DATA/masks/; default 0: off)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--max-minutes", type=float, default=None, help="stop before an epoch would pass this budget")
    p.add_argument("--resume", action="store_true", help="continue from <CKPT>.last.pt if it exists")
    p.add_argument("--name", default=None, help="model name for the card")
    p.add_argument("--version", default=None, help="model version for the card")
    p.add_argument("--demo", action="store_true",
                   help="mark the checkpoint as a demonstration model trained on synthetic images")
    add_json_option(p, "print a JSON summary on stdout")
    add_model_option(p)


def _card(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """What the command line adds to the card: the training data, demo or not, name and version."""
    from models.training.train import DEMO_CARD, describe_training_data

    card: dict[str, Any] = {"training_data": describe_training_data(args.data)}
    if args.demo:
        card.update(DEMO_CARD)
    else:
        card["demo"] = False
    card["name"] = args.name or out.stem
    if args.version:
        card["version"] = args.version
    return card


def run(args: argparse.Namespace) -> int:
    """Run training and print where the checkpoint went."""
    from models.training.evaluate import write_card
    from models.training.train import TrainConfig, TrainError, train

    out = Path(args.out)
    if out.is_dir():
        raise UsageError("--out names a folder; expected a checkpoint file path such as model.pt.")
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        val_fraction=args.val_fraction, seed=args.seed, input_size=args.input_size, warmup_size=args.warmup_size,
        warmup_size_epochs=args.warmup_size_epochs, patience=args.patience, init=args.init,
        threshold_rule=args.threshold_rule, calibrate=not args.no_calibrate, threads=args.threads,
        augment=not args.no_augment, max_minutes=args.max_minutes, attention_weight=args.attention_weight,
    )
    try:
        result = train(args.data, out, config, val_data=args.val, resume=args.resume, card=_card(args, out))
    except TrainError as exc:
        raise UsageError(str(exc)) from None
    # The card stored in the checkpoint, not load_classifier's merge with a stale file beside it.
    write_card(out, result.card)
    summary = {"checkpoint": str(out), "sha256": result.sha256, "epochs_run": result.epochs_run,
               "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
               "temperature": result.temperature, "threshold": result.threshold, "seconds": round(result.seconds, 1)}
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {out.name}: best epoch {result.best_epoch} of {result.epochs_run}, threshold "
              f"{result.threshold:.3f}, temperature {result.temperature:.2f}, {result.seconds / 60:.1f} min",
              file=sys.stderr)
    return EXIT_OK


COMMAND = Command("train", "train a classifier on an image folder (cataract/, normal/)", add_arguments, run)
