"""Everything training needs before its first step, checked at once.

:func:`prepare` indexes the splits and reads them into memory or prepares to stream
them (segcore.train.feed), builds the model and the solver, restores
a checkpoint when resuming, and raises every problem it finds (empty train split, a
batch larger than the split, an input size the architecture cannot take, label values
that do not match the class list, missing weight images, a checkpoint of another model)
before any training starts. The input size (``preprocess.param`` of the dataset) is
checked against the architecture first, before any sample is read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from segcore.common.constants import COL_BIT_DEPTH
from segcore.common.errors import ParamsError, Problems
from segcore.common.precision import ResolvedPrecision, resolve_precision
from segcore.data.dldataset import DLDataset
from segcore.model.config import BundleConfig
from segcore.model.factory import architecture, check_input_size, create_model
from segcore.model.outputs import ignore_indices
from segcore.params import TrainParams
from segcore.train import distributed
from segcore.train.augment import grey_value_scale
from segcore.train.checkpoint import load_checkpoint
from segcore.train.data import check_preprocessed
from segcore.train.feed import Feed, make_feed
from segcore.train.loss import LossFn, make_loss, weighted_cross_entropy
from segcore.train.solver import make_optimizer, solver_values

log = logging.getLogger("segcore.train")

RESUMABLE_CHANGES = frozenset(
    {
        "num_epochs",
        "device",
        "num_threads",
        "nproc",
        "channels_last",
        "out_dir",
        "history",
        "dataset",
        "serialization_strategies",
        "serialization_epochs",
        "evaluation_interval_epochs",
        "time_budget",
        "early_stopping_patience",
        "data_loading",
        "loader_workers",
    }
)
"""Train params that may differ between a checkpoint and the run that resumes it."""


@dataclass
class Run:
    """The state of one training run; what a checkpoint saves and restores."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    feed: Feed
    """Where batches come from: the splits in memory or tiles streamed from disk."""
    config: BundleConfig
    """The model contract (architecture, classes, ignore ids, preprocess parameters)."""
    steps_per_epoch: int
    grey_scale: torch.Tensor
    """``(C,)`` input units per grey value, for brightness augmentation."""
    precision: ResolvedPrecision
    """What ``train.precision`` means on this device (``auto`` resolved)."""
    scaler: torch.amp.GradScaler | None = None
    """Loss scaling of fp16 training; ``None`` otherwise."""
    epoch: int = 0
    """Epochs done."""
    first_epoch: int = 0
    """Epochs done when this process started (after a resume)."""
    best_value: float | None = None
    best_epoch: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    final_measures: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    loss: LossFn = weighted_cross_entropy
    """``loss(logits, target, weight)``: the loss ``train.loss`` names (segcore.train.loss)."""
    stale_evaluations: int = 0
    """Evaluations in a row without improvement (early stopping; kept across a resume)."""
    stop: dict[str, Any] = field(default_factory=dict)
    """How the run ended (segcore.train.stopping): reason, epoch, and for a budget stop the
    seconds at the stop; in the training summary of the bundles."""

    @property
    def ignore_indices(self) -> list[int]:
        return ignore_indices(self.config.class_ids, self.config.ignore_class_ids)

    def best_state(self) -> dict[str, Any]:
        """The checkpoint fields of the best value so far and the evaluations since."""
        return {
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "stale_evaluations": self.stale_evaluations,
        }

    def checkpoint_state(self, params: TrainParams) -> dict[str, Any]:
        """Plain tensors and containers only: loadable with ``weights_only=True``."""
        rng = {"torch": torch.get_rng_state(), "data": self.generator.get_state()}
        dev = next(self.model.parameters()).device
        if dev.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(dev)
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            # The schedule is a pure function of the epoch (segcore.train.solver); kept for reading.
            "step": self.epoch * self.steps_per_epoch,
            "solver": solver_values(params, float(self.epoch), self.steps_per_epoch),
            **self.best_state(),
            "history": self.history,
            "final_measures": self.final_measures,
            "params": params.model_dump(mode="json"),
            "architecture": self.config.architecture,
            "class_ids": self.config.class_ids,
            "rng": rng,
            "precision": self.precision.name,
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }


def prepare(
    dataset: DLDataset | str | Path,
    params: TrainParams,
    ctx: distributed.DistContext,
    checkpoint: Path | None,
) -> Run:
    """Load data, build model and solver, restore ``checkpoint`` if given.

    Raises:
        DatasetError, ParamsError: every problem found, at once.
    """
    where = str(dataset) if not isinstance(dataset, DLDataset) else "the dataset"
    ds = dataset if isinstance(dataset, DLDataset) else DLDataset.load(dataset)
    check_preprocessed(ds, where)
    p = params
    preprocess = dict(ds.preprocess_param or {})
    ignore = [int(i) for i in preprocess.get("ignore_class_ids", [])]
    # The model first, checked on the stated input size: an input size the architecture
    # cannot take is refused before any sample is read.
    channels = int(preprocess.get("image_num_channels", 3))
    size = (int(preprocess.get("image_height", 0)), int(preprocess.get("image_width", 0)))
    arch, model = _model(p, len(ds.class_ids), channels, size)
    global_batch = p.batch_size * p.batch_size_multiplier * ctx.world_size
    layout = torch.channels_last if p.channels_last else torch.contiguous_format
    feed = make_feed(ds, p, where, ctx.device, layout, global_batch, ctx.world_size)
    if ctx.is_main:
        log.info(feed.summary)
    if feed.input_size != (channels, *size):
        check_input_size(model, *feed.input_size[1:], feed.input_size[0])
    model.to(ctx.device, memory_format=layout)  # before the optimizer loads its state
    precision = resolve_precision(p.precision, ctx.device)
    config = BundleConfig(
        arch,
        list(ds.class_ids),
        list(ds.class_names),
        ignore,
        preprocess,
        input_bit_depth=_bit_depth(ds),
    )
    run = Run(
        model=model,
        optimizer=make_optimizer(p, model),
        generator=torch.Generator().manual_seed(p.seed),
        feed=feed,
        config=config,
        steps_per_epoch=feed.units // global_batch,
        grey_scale=grey_value_scale(preprocess, channels),
        precision=precision,
        scaler=precision.grad_scaler(),
    )
    run.loss = make_loss(p, run.ignore_indices)
    if checkpoint is not None:
        _restore(run, load_checkpoint(checkpoint), p, checkpoint)
    run.first_epoch = run.epoch
    run.info = _run_info(run, ctx)
    return run


def _model(
    p: TrainParams, num_classes: int, channels: int, size: tuple[int, int]
) -> tuple[dict[str, Any], torch.nn.Module]:
    """The architecture and a new model of it (seeded by ``train.seed``), checked on the
    input ``size`` when the dataset states one."""
    torch.manual_seed(p.seed)  # inside train_model's fork_rng: the caller's RNG is untouched
    arch = architecture(p.model, num_classes, channels, encoder=p.encoder, **p.model_kwargs)
    model = create_model(
        p.model,
        num_classes,
        channels,
        encoder=p.encoder,
        encoder_weights=p.encoder_weights,
        **p.model_kwargs,
    )
    if all(size):
        check_input_size(model, *size, channels)
    return arch, model


def _bit_depth(ds: DLDataset) -> int | None:
    """Bits per channel of the dataset's images when they all share one, else ``None``."""
    depths = set(ds.samples[COL_BIT_DEPTH]) if COL_BIT_DEPTH in ds.samples else set()
    return int(depths.pop()) if len(depths) == 1 else None


def _run_info(run: Run, ctx: distributed.DistContext) -> dict[str, Any]:
    """What a run reports at its start (log, MLflow tags)."""
    arch = run.config.architecture
    return {
        "model": arch["name"],
        "encoder": arch["encoder"],
        "architecture": arch,
        "num_parameters": sum(t.numel() for t in run.model.parameters()),
        "train_samples": run.feed.train_samples,
        "validation_samples": run.feed.val_samples,
        "units_per_epoch": run.feed.units,
        "input_size": list(run.feed.input_size),
        "data_loading": run.feed.kind,
        "steps_per_epoch": run.steps_per_epoch,
        "processes": ctx.world_size,
        "device": str(ctx.device),
        "precision": run.precision.name,
        "precision_native": run.precision.native,
        "resumed_from_epoch": run.epoch,
    }


def _restore(run: Run, state: dict[str, Any], p: TrainParams, path: Path) -> None:
    """Put a checkpoint's state into ``run`` after checking it belongs to this training."""
    problems = Problems()
    if list(state["class_ids"]) != run.config.class_ids:
        problems.add(
            f"{path}: trained for class_ids {state['class_ids']} ({len(state['class_ids'])} "
            f"classes) but the dataset has {run.config.class_ids}; the class count does not match: "
            "train without --resume"
        )
    if state["architecture"] != run.config.architecture:
        problems.add(
            f"{path}: holds model {state['architecture']}, the params ask for "
            f"{run.config.architecture}; use the params of that run or train without --resume"
        )
    now = p.model_dump(mode="json")
    for key, old in state["params"].items():
        if key not in RESUMABLE_CHANGES and now.get(key) != old:
            problems.add(
                f"train.{key} is {now.get(key)!r} but the checkpoint was trained with {old!r}; "
                "set it back to resume, or train without --resume"
            )
    was = state["params"].get("num_epochs")
    if p.lr_schedule != "none" and was != p.num_epochs:
        problems.add(
            f"train.num_epochs is {p.num_epochs} but the checkpoint was trained with {was} "
            f"under lr_schedule {p.lr_schedule}, whose decay spans num_epochs; set it back to "
            "resume, or train without --resume"
        )
    # Another precision asked is reported above; here: the same ``auto`` resolving otherwise.
    trained_in = state.get("precision", "fp32")
    asked_before = state["params"].get("precision", p.precision)
    if trained_in != run.precision.name and asked_before == p.precision:
        problems.add(
            f"{path}: trained in {trained_in}, train.precision {p.precision!r} means "
            f"{run.precision.name} on this machine; set train.precision {trained_in} to resume "
            "(a run keeps one precision), or train without --resume"
        )
    if state["epoch"] >= p.num_epochs:
        problems.add(
            f"{path}: already trained {state['epoch']} of num_epochs {p.num_epochs}; "
            "raise --epochs to continue training"
        )
    problems.raise_if_any(ParamsError, "cannot resume")
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scaler is not None and "scaler" in state:
        run.scaler.load_state_dict(state["scaler"])
    run.generator.set_state(state["rng"]["data"])
    torch.set_rng_state(state["rng"]["torch"])
    dev = next(run.model.parameters()).device
    if dev.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"], dev)
    run.epoch = int(state["epoch"])
    run.best_value, run.best_epoch = state["best_value"], state["best_epoch"]
    run.stale_evaluations = int(state.get("stale_evaluations", 0))
    run.history = list(state["history"])
    run.final_measures = dict(state["final_measures"])
