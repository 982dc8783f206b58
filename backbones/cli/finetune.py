"""``finetune``: train a new classifier (and the last stage) of a pretrained backbone on your labelled images."""

from __future__ import annotations

import argparse
import sys

from backbones.cli.common import emit_json


def register(sub: argparse._SubParsersAction) -> None:
    from backbones.data.sample import TRANSFER_SAMPLE_NAME
    from backbones.transfer.finetune import OPTIMIZERS, STAGES

    p = sub.add_parser(
        "finetune",
        help="fine-tune a backbone on a folder of class sub-folders (the notes' recipe: head, then last stage)",
        description=(
            "head: a new classifier on the frozen backbone's features; last-stage: then the last stage "
            "unfrozen at a tenth of the learning rate, with random crops and flips. Writes model.safetensors "
            "(loads with its class names in predict, viz cam, eval and the dashboard), train.log in the notes' "
            "format, train.csv and run.json. Runs under torchrun unchanged."
        ),
    )
    p.add_argument("dataset", metavar="DATASET",
                   help="folder with one sub-folder per class (train/ val/ test/ used when present), a .zip, a CSV, "
                        f"or {TRANSFER_SAMPLE_NAME} (built in)")
    p.add_argument("--model", "-m", required=True, help="catalog name; see `python -m backbones list`")
    p.add_argument("--weights", default="default", help="pretrained weights to start from: a name, 'default' or 'none'")
    p.add_argument("--checkpoint", default=None, help="start from your own checkpoint of --model instead")
    p.add_argument("--stage", choices=STAGES, default="head", help="head (default) or last-stage")
    p.add_argument("--epochs", type=int, default=10, help="epochs per stage (default 10)")
    p.add_argument("--lr", type=float, default=None,
                   help="the head's learning rate (default 1e-3 for adamw, 1e-2 for sgd); the last stage uses a tenth")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch and process (default 32)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw", help="adamw (default) or sgd with momentum")
    p.add_argument("--patience", type=int, default=5,
                   help="stop a stage after this many epochs without a better validation accuracy (default 5)")
    p.add_argument("--input-size", type=int, default=None, metavar="PX",
                   help="train at this square input size instead of the model's own (saved with the checkpoint)")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="processes decoding images (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the head's start and the shuffling")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for the checkpoint and logs (default: a new folder under the runs folder)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(handler=cmd_finetune)


def cmd_finetune(args) -> int:
    from backbones.cli.transfer import read_transfer_dataset
    from backbones.data.distributed import read_launch
    from backbones.transfer.finetune import finetune

    launch = read_launch()
    main = launch is None or launch.is_main
    dataset = read_transfer_dataset(args.dataset)  # before loading the model: a wrong path fails fast

    def progress(done: int, total: int, record) -> None:
        if main:
            mark = " *" if record.improved else ""
            print(f"[{done}/{total}] {record.stage}: {record.log_line()}{mark}", file=sys.stderr, flush=True)

    result = finetune(
        dataset, args.model, stage=args.stage, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        optimizer=args.optimizer, patience=args.patience, weights=args.weights, checkpoint=args.checkpoint,
        input_size=args.input_size, workers=args.workers, device=args.device, out_dir=args.out, progress=progress,
        seed=args.seed,
    )
    if not main:
        return 0
    if args.json:
        emit_json(result.to_dict())
        return 0
    test = "-" if result.test_acc is None else f"{result.test_acc * 100:.1f}%"
    print(f"{result.model} on {result.dataset} ({result.stage}): {result.message}")
    print(f"test accuracy {test} on {result.splits['test']} held-out images "
          f"(train {result.splits['train']}, validation {result.splits['val']})")
    if result.skipped_images:
        print(f"note: {result.skipped_images} unreadable image(s) left out")
    print(f"checkpoint: {result.checkpoint}")
    print(f"log: {result.log}")
    print(f"use it: python -m backbones predict IMG --checkpoint {result.checkpoint}")
    return 0
