"""The config schema: the type of every key of cnnrun's config groups, as structured configs (dataclasses).

Each YAML file of ``conf/`` extends its group's schema (``defaults: [/schema/<group>@_here_, _self_]``), so Hydra
checks every value, and every command-line override, against these types while it composes the config, before
anything heavy is imported: ``optim.lr=abc`` is refused with the key's path, a misspelled key with the closest one.

Where a default lives (each is written once):

- a value every option of a group sets for itself (``optim.lr``, ``trainer.max_epochs``, ``data.batch_size``) is
  written in the option's YAML file, where its comment documents it; the schema gives its type only (``MISSING``);
- a key that options may leave out has its default here (the data splits, the logger switches, Lightning's own
  Trainer arguments, whose ``None`` means Lightning's default).

Code reads the composed config's keys directly: no ``.get(key, default)`` repeats a default. Light module: imports
OmegaConf and Hydra's config store only.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

# The types are the typing module's, as OmegaConf reads them (it has no unions but Optional: Any stands for them).


# -- the root config (conf/config.yaml) ----------------------------------------------------------------------------
@dataclass
class Regularization:
    l1: float = MISSING
    mixup_alpha: float = MISSING
    cutmix_alpha: float = MISSING
    ema_decay: Optional[float] = MISSING


@dataclass
class Root:
    mode: str = MISSING
    seed: int = MISSING
    ckpt_path: Optional[str] = MISSING
    resume: Optional[str] = MISSING
    kind: str = MISSING
    image: Optional[str] = MISSING
    regularization: Regularization = field(default_factory=Regularization)
    imports: List[str] = MISSING
    # the config groups, each typed by its own schema below (model/ and generalization/ are checked by the layer
    # registry and the methods' appliers: their keys are the models' and methods' own)
    model: Any = MISSING
    data: Any = MISSING
    optim: Any = MISSING
    loss: Any = MISSING
    sched: Any = MISSING
    trainer: Any = MISSING
    logger: Any = MISSING
    callbacks: Any = MISSING
    generalization: Any = None


# -- trainer/ -------------------------------------------------------------------------------------------------------
@dataclass
class Trainer:
    """trainer/default.yaml sets cnnrun's choices; the other keys are pytorch_lightning.Trainer's own arguments,
    None leaving Lightning's default (cnnrun drops them before building the Trainer)."""

    # cnnrun's own keys (not passed to Lightning)
    threads: Any = MISSING  # auto | a positive integer
    channels_last: bool = MISSING
    compile: Any = MISSING  # false | true | a mapping of torch.compile arguments
    # applied by cnnrun's optimisation step (Lightning's own would refuse manual optimisation)
    gradient_clip_val: Optional[float] = MISSING
    gradient_clip_algorithm: str = MISSING
    accumulate_grad_batches: int = MISSING
    # Lightning's arguments that trainer/default.yaml sets
    max_epochs: int = MISSING
    accelerator: str = MISSING
    strategy: str = MISSING
    devices: Any = MISSING
    precision: Any = MISSING
    benchmark: Optional[bool] = MISSING
    check_val_every_n_epoch: Optional[int] = MISSING
    limit_train_batches: Any = MISSING
    limit_val_batches: Any = MISSING
    limit_test_batches: Any = MISSING
    deterministic: Any = MISSING
    num_sanity_val_steps: Optional[int] = MISSING
    enable_progress_bar: Optional[bool] = MISSING
    # the rest of Lightning's arguments (tests/test_schema.py checks the list against pytorch_lightning.Trainer)
    num_nodes: Optional[int] = None
    sync_batchnorm: Optional[bool] = None
    fast_dev_run: Any = None
    min_epochs: Optional[int] = None
    max_steps: Optional[int] = None
    min_steps: Optional[int] = None
    max_time: Any = None
    limit_predict_batches: Any = None
    overfit_batches: Any = None
    val_check_interval: Any = None
    log_every_n_steps: Optional[int] = None
    enable_model_summary: Optional[bool] = None
    inference_mode: Optional[bool] = None
    use_distributed_sampler: Optional[bool] = None
    profiler: Any = None
    detect_anomaly: Optional[bool] = None
    barebones: Optional[bool] = None
    plugins: Any = None
    reload_dataloaders_every_n_epochs: Optional[int] = None
    enable_autolog_hparams: Optional[bool] = None
    model_registry: Optional[str] = None


# -- callbacks/ -----------------------------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    monitor: str = MISSING
    mode: str = MISSING
    tie_break: Optional[str] = MISSING
    tie_break_mode: str = MISSING
    save_last: bool = MISSING


@dataclass
class EarlyStopping:
    enabled: bool = MISSING
    monitor: str = MISSING
    mode: str = MISSING
    patience: int = MISSING
    min_delta: float = MISSING


@dataclass
class ProgressBar:
    refresh_rate: int = MISSING


@dataclass
class Callbacks:
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    progress_bar: ProgressBar = field(default_factory=ProgressBar)


# -- logger/ (logger=[tensorboard,csv] merges the chosen files: every logger is off unless its file turns it on) -----
@dataclass
class Logger:
    tensorboard: bool = False
    log_summary: bool = False  # the model table as TensorBoard text
    dashboards: Any = False  # see logger/tensorboard.yaml: true, false or a mapping of the dashboards
    csv: bool = False
    mlflow: Any = False  # false, or a mapping: tracking_uri, experiment_name


# -- optim/, sched/, loss/: each option's file sets every key of its schema --------------------------------------
@dataclass
class SGD:
    name: str = MISSING
    lr: float = MISSING
    momentum: float = MISSING
    nesterov: bool = MISSING
    weight_decay: float = MISSING


@dataclass
class Adam:
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    betas: List[float] = MISSING


@dataclass
class NoSchedule:
    name: str = MISSING


@dataclass
class Cosine(NoSchedule):
    warmup_epochs: float = MISSING
    min_lr_ratio: float = MISSING


@dataclass
class Step(NoSchedule):
    step_size: int = MISSING
    gamma: float = MISSING


@dataclass
class OneCycle(NoSchedule):
    max_lr_ratio: float = MISSING
    pct_start: float = MISSING
    cycle_momentum: bool = MISSING


@dataclass
class Loss:
    """Every built-in objective's keys: a config may switch ``loss.name`` (generalization=focal does) and keep the
    others' settings; the chosen objective takes the ones it has arguments for."""

    name: str = MISSING
    label_smoothing: float = MISSING
    gamma: Optional[float] = None  # focal's focusing parameter (loss/focal.yaml sets it)


# -- data/: the keys every data set shares, with their defaults, then each source's own keys ----------------------
@dataclass
class Data:
    name: str = MISSING
    input_shape: List[int] = MISSING  # [channels, *spatial]: 1 to 3 spatial sizes
    num_classes: int = MISSING
    batch_size: int = MISSING
    # held out once, stratified, never used for model selection; None: the data set has a fixed test split
    test_fraction: Optional[float] = 0.2
    val_fraction: float = 0.1  # carved out of the training data (or pool), stratified
    train_fraction: float = 1.0  # use this stratified fraction of the training split
    split_seed: int = 0  # fixes the splits (and any subsampling), independently of the run's seed
    normalize: bool = False  # standardise every batch with mean/std of the training split
    imbalance: float = 1  # > 1: a long-tailed training split, largest/smallest class = imbalance
    balance: str = "none"  # none | sampler (class-balanced sampling) | loss_weights (class-weighted loss)
    # on-device training augmentation, e.g. {crop: {padding: 4}, hflip: {p: 0.5}}; null: none
    augment: Any = None
    augment_recipe: Any = None  # the data set's recipe (generalization=augment uses it); null: none
    stats: Any = None  # the training split's mean and std, filled in by the run (and saved with its config)


@dataclass
class Synthetic(Data):
    num_samples: int = MISSING
    noise: float = MISSING


@dataclass
class TorchvisionSet(Data):
    root: str = MISSING
    download: bool = MISSING


@dataclass
class Mnist1d(Data):
    root: str = MISSING
    disk_cache: bool = MISSING
    num_samples: int = MISSING
    generator_seed: int = MISSING
    shuffle_seq: bool = MISSING


@dataclass
class MovingDigits(Data):
    frames: int = MISSING
    size: int = MISSING
    digit_size: int = MISSING
    speed: Any = MISSING  # pixels per frame, or a range [low, high]
    directions: int = MISSING
    label: str = MISSING
    noise: float = MISSING
    num_samples: int = MISSING
    generator_seed: int = MISSING


@dataclass
class ImageFolder(Data):
    root: str = MISSING
    val_root: Optional[str] = MISSING
    test_root: Optional[str] = MISSING
    image_size: int = MISSING
    channels: int = MISSING
    resize: str = MISSING
    cache: str = MISSING
    max_memory_mb: float = MISSING
    num_workers: Any = MISSING  # auto | an integer


# Where each schema is stored: conf/<group>/<option>.yaml extends /schema/<name>
SCHEMAS: Dict[str, Any] = {
    "root": Root, "trainer": Trainer, "callbacks": Callbacks, "logger": Logger,
    "optim/sgd": SGD, "optim/adam": Adam, "sched/none": NoSchedule, "sched/cosine": Cosine, "sched/step": Step,
    "sched/onecycle": OneCycle, "loss/loss": Loss,
    "data/data": Data, "data/synthetic": Synthetic, "data/torchvision": TorchvisionSet, "data/mnist1d": Mnist1d,
    "data/moving_digits": MovingDigits, "data/image_folder": ImageFolder,
}


def register_schemas() -> None:
    """Store the schemas in Hydra's config store (group ``schema``), where the YAML files find them, once per process:
    storing them again took 20 ms of every run (a sweep's jobs share the process)."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.object_type import ObjectType

    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        group, _, option = f"schema/{name}".rpartition("/")
        if store.get_type(f"{group}/{option}.yaml") is not ObjectType.CONFIG:
            store.store(group=group, name=option, node=node)
