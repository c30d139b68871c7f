"""Everything training needs before its first step, checked at once.

:func:`prepare` reads the splits into memory, builds the model and the solver, restores
a checkpoint when resuming, and raises every problem it finds (empty train split, a
batch larger than the split, an input size the architecture cannot take, label values
that do not match the class list, missing weight images, a checkpoint of another model)
before any training starts. The input size (``preprocess.param`` of the dataset) is
checked against the architecture first, before any sample is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from segcore.common.constants import COL_BIT_DEPTH, TRAIN, VALIDATION
from segcore.common.errors import DatasetError, ParamsError, Problems
from segcore.common.precision import ResolvedPrecision, resolve_precision
from segcore.data.dldataset import DLDataset
from segcore.model.config import BundleConfig
from segcore.model.factory import architecture, check_input_size, create_model
from segcore.model.outputs import ignore_indices
from segcore.params import TrainParams
from segcore.train import distributed
from segcore.train.augment import grey_value_scale
from segcore.train.checkpoint import load_checkpoint
from segcore.train.data import SplitData, check_preprocessed, load_split
from segcore.train.loss import LossFn, make_loss, weighted_cross_entropy
from segcore.train.solver import make_optimizer, solver_values

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
    }
)
"""Train params that may differ between a checkpoint and the run that resumes it."""


@dataclass
class Run:
    """The state of one training run; what a checkpoint saves and restores."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    train: SplitData
    val: SplitData
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
    torch.manual_seed(p.seed)  # inside train_model's fork_rng: the caller's RNG is untouched
    arch = architecture(p.model, len(ds.class_ids), channels, encoder=p.encoder, **p.model_kwargs)
    model = create_model(
        p.model,
        len(ds.class_ids),
        channels,
        encoder=p.encoder,
        encoder_weights=p.encoder_weights,
        **p.model_kwargs,
    )
    if all(size):
        check_input_size(model, *size, channels)
    global_batch = p.batch_size * p.batch_size_multiplier * ctx.world_size
    train, val = _load_splits(ds, p, where, ignore, global_batch, ctx.world_size)
    if train.image_size != (channels, *size):
        check_input_size(model, *train.image_size[1:], train.image_size[0])
    layout = torch.channels_last if p.channels_last else torch.contiguous_format
    # On the training device and in the network's memory layout once: a batch is then
    # an index gather that keeps both, with no copy or conversion per step.
    train, val = (_to_device(d, ctx.device, layout) for d in (train, val))
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
        train=train,
        val=val,
        config=config,
        steps_per_epoch=len(train) // global_batch,
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


def _bit_depth(ds: DLDataset) -> int | None:
    """Bits per channel of the dataset's images when they all share one, else ``None``."""
    depths = set(ds.samples[COL_BIT_DEPTH]) if COL_BIT_DEPTH in ds.samples else set()
    return int(depths.pop()) if len(depths) == 1 else None


def _load_splits(
    ds: DLDataset,
    p: TrainParams,
    where: str,
    ignore: list[int],
    global_batch: int,
    world_size: int,
) -> tuple[SplitData, SplitData]:
    """The train and validation splits in memory, after checking that training can use them.

    Raises:
        DatasetError: every problem with the splits, at once.
    """
    problems = Problems()
    splits: dict[str, SplitData] = {}
    for name in (TRAIN, VALIDATION):
        try:
            splits[name] = load_split(ds, name, with_weights=name == TRAIN, ignore_class_ids=ignore)
        except DatasetError as err:
            problems.extend(err.problems)
    train, val = splits.get(TRAIN), splits.get(VALIDATION)
    if train is not None and len(train) == 0:
        problems.add(
            f"{where}: the train split is empty; run `segcore split` with training_percent > 0"
        )
    elif train is not None and len(train) < global_batch:
        problems.add(
            f"the train split has {len(train)} samples, fewer than one update takes "
            f"(batch_size {p.batch_size} x batch_size_multiplier {p.batch_size_multiplier} x "
            f"{world_size} processes = {global_batch}); lower train.batch_size"
        )
    if val is not None and len(val) == 0 and p.early_stopping_patience is not None:
        problems.add(
            f"{where}: the validation split is empty, so train.early_stopping_patience has "
            "nothing to compare; split with validation_percent > 0 or set it to null"
        )
    if val is not None and len(val) == 0 and "best" in p.serialization_strategies:
        problems.add(
            f"{where}: the validation split is empty, so the 'best' model cannot be chosen; "
            "split with validation_percent > 0 or remove 'best' from serialization_strategies"
        )
    if train is not None and len(train):
        _, h, w = train.image_size
        if p.augmentation.rotate == 90 and h != w and p.augmentation.augmentation_percentage:
            problems.add(
                f"train.augmentation.rotate 90 needs square inputs, the samples are {w}x{h}; "
                "set it to 180 or 0"
            )
    problems.raise_if_any(DatasetError, "training cannot start")
    assert train is not None and val is not None
    return train, val


def _run_info(run: Run, ctx: distributed.DistContext) -> dict[str, Any]:
    """What a run reports at its start (log, MLflow tags)."""
    arch = run.config.architecture
    return {
        "model": arch["name"],
        "encoder": arch["encoder"],
        "architecture": arch,
        "num_parameters": sum(t.numel() for t in run.model.parameters()),
        "train_samples": len(run.train),
        "validation_samples": len(run.val),
        "input_size": list(run.train.image_size),
        "steps_per_epoch": run.steps_per_epoch,
        "processes": ctx.world_size,
        "device": str(ctx.device),
        "precision": run.precision.name,
        "precision_native": run.precision.native,
        "resumed_from_epoch": run.epoch,
    }


def _to_device(data: SplitData, device: torch.device, layout: torch.memory_format) -> SplitData:
    return SplitData(
        images=data.images.to(device).contiguous(memory_format=layout),
        targets=data.targets.to(device),
        weights=None if data.weights is None else data.weights.to(device),
    )


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
