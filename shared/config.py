"""The one config tree: every setting of a fedmm run, validated once, frozen, JSON-able."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.lookup import closest_hint
from shared.modalities import canonical_modality


class FrozenModel(BaseModel):
    """Base of every fedmm config model: immutable and strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- data


class DataConfig(FrozenModel):
    """How a site turns its studies into model input (same on every site)."""

    modalities: tuple[str, ...] = Field(
        default=("t1", "t1ce", "t2", "flair"),
        description="Modalities to use, in stacking order; aliases (t1n, t2f, ...) accepted.",
    )
    layout: str = Field(default="brats2021", description="Dataset-adapter name for site folders.")
    spacing_mm: float = Field(default=2.0, gt=0, le=8, description="Isotropic resampling (mm).")
    crop_size: int = Field(default=48, ge=8, le=256, description="Edge of cubic crops (voxels).")
    batch_size: int = Field(default=4, ge=2, description="Studies per local step (>=2 negatives).")
    eval_fraction: float = Field(default=0.25, ge=0, lt=1, description="Held-out studies per site.")
    percentile_low: float = Field(default=0.5, ge=0, lt=50)
    percentile_high: float = Field(default=99.5, gt=50, le=100)
    hist_bins: int = Field(default=16, ge=4, le=256, description="Bins of intensity histograms.")
    crop_alignment: Literal["independent", "shared"] = Field(
        default="independent",
        description="'independent': each study gets its own random crop location; 'shared': "
        "every study of a batch is cropped at the same relative location, so contrastive "
        "negatives share anatomy and cannot be told apart by position alone (measured on the "
        "default phantom run: the loss then stays at chance for 5 x 20 steps; docs/methods.md).",
    )
    num_workers: int = Field(default=0, ge=0, description="DataLoader workers on a site.")
    max_voxels: int = Field(
        default=256**3, ge=8**3,
        description="Largest volume, in voxels after resampling to spacing_mm, that a site "
        "loads; computed from each file's header before reading it, so a header that "
        "claims a huge grid is reported as a problem instead of exhausting memory. A site "
        "refuses a run that asks for more than its own limit (site.toml [limits].max_voxels).",
    )

    @field_validator("modalities")
    @classmethod
    def _canonical(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(canonical_modality(v) for v in value)
        if len(set(names)) != len(names):
            raise ValueError(f"modalities must be distinct after aliasing, got {list(names)}")
        if not names:
            raise ValueError("modalities must name at least one modality, got an empty list")
        return names


# --------------------------------------------------------------------------- model


class ModelConfig(FrozenModel):
    """Encoder architecture; presets live in shared/model/encoder.py."""

    preset: Literal["auto", "cpu-small", "gpu-base", "nnunet-resenc-cpu", "nnunet-resenc-m"] = Field(
        default="auto", description="auto = gpu-base when CUDA is available, else cpu-small; "
        "nnunet-resenc-* = nnU-Net's residual encoder, exportable to nnU-Net (docs/finetune.md).",
    )
    site_local_norm: bool = Field(
        default=True,
        description="Keep normalization-layer parameters on the site (FedBN-style).",
    )


# --------------------------------------------------------------------------- pretext


class AdaDNConfig(FrozenModel):
    """AdaDN-style augmentation (our reconstruction of Wen et al. 2023; docs/methods.md)."""

    probability: float = Field(default=0.8, ge=0, le=1, description="Chance a view is denormalized.")
    target: Literal["pool", "own_site", "pool_jitter"] = Field(
        default="pool",
        description="Where target statistics come from: 'pool' = the server's anonymized pool "
        "(other sites' appearance; falls back to own-site stats when the pool lacks the "
        "modality), 'own_site' = this site's own statistics, 'pool_jitter' = a draw around a "
        "pool entry (mean +- jitter x std, std x (1 +- jitter)).",
    )
    jitter: float = Field(default=0.1, ge=0, le=1, description="Spread of 'pool_jitter' draws.")
    interpolate: bool = Field(
        default=False,
        description="Blend source and target statistics with l ~ U(0, 1) instead of l = 1.",
    )
    matching: Literal["moments", "histogram"] = Field(
        default="moments",
        description="'moments': match foreground mean and std; 'histogram': map the "
        "foreground intensity quantiles onto the target's (histogram matching).",
    )


class TaskConfig(FrozenModel):
    """What every pretext task's config has: its loss weight, and which head entries it shares."""

    weight: float = Field(default=1.0, gt=0, description="Weight of this task's loss in the sum.")

    def shared_head_entries(self) -> tuple[str, ...]:
        """Names in the task's head ``state_dict`` that the run aggregates across sites.

        Empty by default: every head stays on its site. A task that offers to share an
        entry does so only behind an explicit option (and each site must consent too).
        """
        return ()


class CrossModalContrastiveConfig(TaskConfig):
    """InfoNCE with positives = two modalities of one study at one location (Wen et al. 2023)."""

    name: Literal["cross_modal_contrastive"] = "cross_modal_contrastive"
    temperature: float = Field(default=0.1, gt=0, le=10)
    projection_dim: int = Field(default=64, ge=8)
    adadn: AdaDNConfig = AdaDNConfig()


class ModalityPuzzleConfig(TaskConfig):
    """SLeM modality-block recombination: classify which modality fills each block."""

    name: Literal["modality_puzzle"] = "modality_puzzle"
    repetition: bool = Field(
        default=True,
        description="True: any present modality per block (M^4 classes; a study needs two "
        "present modalities); False: the four blocks take four distinct modalities (4! = 24 "
        "classes for four modalities; a study needs four present modalities, so studies "
        "missing one are skipped).",
    )
    blocks: Literal["quadrants", "octant_pairs"] = Field(
        default="quadrants",
        description="How the crop is split into four blocks (our reconstruction): "
        "'quadrants' = 2x2 in the H-W plane through the whole depth; 'octant_pairs' = 2x2 "
        "in the D-H plane through the whole width.",
    )


class MaskedModalityReconstructionConfig(TaskConfig):
    """BrainMVP: masked blocks filled from templates / another modality, reconstructed."""

    name: Literal["masked_modality_reconstruction"] = "masked_modality_reconstruction"
    block_size: int = Field(default=8, ge=2, description="Edge of the cubic masking blocks (voxels).")
    mask_ratio: float = Field(default=0.8, gt=0, lt=1, description="Fraction of blocks masked.")
    template_size: int = Field(
        default=32, ge=4, le=128,
        description="Edge of each modality's learnable template, which spans the whole "
        "(brain-cropped) volume; a crop reads its window by trilinear resampling.",
    )
    cross_modal_from_round: int = Field(
        default=2, ge=1,
        description="First round in which view 2 fills masked blocks from another modality "
        "of the same study (the warm-up before it uses templates only).",
    )
    contrastive_from_round: int = Field(
        default=3, ge=1, description="First round with the modality-aware contrastive loss."
    )
    rec_weight_view1: float = Field(default=10.0, ge=0, description="BrainMVP: 10 x rec(view 1).")
    rec_weight_view2: float = Field(default=1.0, ge=0, description="BrainMVP: 1 x rec(view 2).")
    contrastive_weight: float = Field(default=1.0, ge=0, description="BrainMVP: 1 x contrastive.")
    temperature: float = Field(default=1.0, gt=0, le=10, description="BrainMVP uses 1.0.")
    share_templates: bool = Field(
        default=False,
        description="Aggregate the modality templates across sites like the encoder. WARNING: "
        "a learnt template converges towards an average image of a site's patients, so "
        "sharing it sends patient-derived images; each site must also allow it "
        "(site.toml share_templates = true).",
    )

    def shared_head_entries(self) -> tuple[str, ...]:
        return ("templates",) if self.share_templates else ()


class RelativeSlicePositionConfig(TaskConfig):
    """Anatomy planes: regress a slice's normalised position along the stack."""

    name: Literal["relative_slice_position"] = "relative_slice_position"
    axis: Literal["axial", "coronal", "sagittal", "random"] = Field(
        default="axial", description="Stack direction; 'random' picks one per study."
    )
    slices_per_study: int = Field(default=4, ge=1, le=32, description="Slices sampled per study.")
    slab_thickness: int = Field(default=1, ge=1, le=16, description="Voxels per slice (1 = a slice).")


class PlaneIntersectionConfig(TaskConfig):
    """Anatomy planes: regress the heat map of the line where two oblique planes meet."""

    name: Literal["plane_intersection"] = "plane_intersection"
    sigma: float = Field(
        default=1.5, gt=0, le=16,
        description="Gaussian width of the line heat map in plane pixels (the paper's 6 px on "
        "224^2, scaled to fedmm's smaller planes).",
    )
    max_tilt_deg: float = Field(
        default=90.0, gt=0, le=90, description="Largest tilt of a plane away from the axial one."
    )


class VarianceCovarianceConfig(TaskConfig):
    """VICReg's variance and covariance terms on the deepest features (anti-collapse)."""

    name: Literal["variance_covariance"] = "variance_covariance"
    variance_weight: float = Field(default=25.0, ge=0, description="VICReg's lambda: 25.")
    covariance_weight: float = Field(default=1.0, ge=0, description="VICReg's nu: 1.")
    target_std: float = Field(default=1.0, gt=0, description="VICReg's gamma: the hinge on "
                              "each channel's standard deviation.")


#: Discriminated union over every registered pretext task's config (tests keep it in
#: step with the registry in shared/pretext/registry.py).
PretextConfig = Annotated[
    CrossModalContrastiveConfig
    | ModalityPuzzleConfig
    | MaskedModalityReconstructionConfig
    | RelativeSlicePositionConfig
    | PlaneIntersectionConfig
    | VarianceCovarianceConfig,
    Field(discriminator="name"),
]


def pretext_task_names() -> list[str]:
    """The pretext tasks a run config accepts, sorted: the names of PretextConfig's members
    (read without importing the tasks themselves, which load torch and MONAI)."""
    union = get_args(PretextConfig)[0]
    members = get_args(union) or (union,)
    return sorted(m.model_fields["name"].default for m in members)


# --------------------------------------------------------------------------- training


class TrainConfig(FrozenModel):
    """One site's local optimisation in a round."""

    local_steps: int = Field(default=20, ge=1, description="Optimizer steps per round per site.")
    lr: float = Field(default=1e-3, gt=0, le=1)
    weight_decay: float = Field(default=1e-4, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(default=True, description="bfloat16 autocast on CUDA (ignored on CPU).")
    prefetch: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Make the next step's batch and views in a background thread while the "
        "current step runs (client/prefetch.py): 'auto' does so on CUDA, where a step "
        "otherwise waits on the CPU. The steps and their random draws are the same either way.")
    channels_last: bool = Field(
        default=False,
        description="Keep the encoder's and heads' 3D convolution weights in channels-last "
        "memory format (torch.channels_last_3d), so their convolutions run channels-last; "
        "benchmarks/throughput.py --channels-last measures it.")
    compile: bool = Field(
        default=False,
        description="torch.compile the encoder (nn.Module.compile: its state dict, and so what "
        "leaves the site, is unchanged); the first steps pay the compilation; "
        "benchmarks/throughput.py --compile measures it.")
    eval_batches: int = Field(default=2, ge=1, description="Held-out batches per evaluation.")


class StrategySettings(FrozenModel):
    """What every strategy's config has: how many sites it needs to do what it claims.

    The check runs against ``federation.min_nodes``, the number of sites round 0 waits
    for; ``server/strategy.py`` maps each config onto its Flower class.
    """

    def min_sites(self) -> int:
        """Sites (accepted replies per round) the strategy needs to outvote a bad one."""
        return 1

    def why_min_sites(self) -> str:
        """Where :meth:`min_sites` comes from, for errors and docs."""
        return "it averages every accepted update"


class FedAvgConfig(StrategySettings):
    """Flower ``FedAvg`` (McMahan et al., AISTATS 2017), weighted by ``num-examples``."""

    name: Literal["fedavg"] = "fedavg"


class FedEmaConfig(StrategySettings):
    """FedAvg on the server plus FedEMA's divergence-aware blending on each site.

    Zhuang et al., ICLR 2022 (docs/methods.md, Federated strategies): ``W_k <- mu W_k + (1 - mu) W_g``,
    ``mu = min(lambda ||W_g - W_k||, 1)``, ``lambda = fedema_tau / ||W_g - W_k||``.
    """

    name: Literal["fedema"] = "fedema"
    fedema_tau: float = Field(
        default=0.7, gt=0, description="FedEMA: lambda = tau / ||W_g - W_k|| fixed in a site's "
        "first blended round; mu = min(lambda ||W_g - W_k||, 1).",
    )


class FedProxConfig(StrategySettings):
    """Flower ``FedProx``: each site adds ``mu / 2 ||w - w_global||^2`` to its local loss."""

    name: Literal["fedprox"] = "fedprox"
    proximal_mu: float = Field(default=0.01, ge=0, description="Weight of the proximal term.")


class FedAvgMConfig(StrategySettings):
    """Flower ``FedAvgM``: FedAvg with server momentum (Hsu et al., 2019)."""

    name: Literal["fedavgm"] = "fedavgm"
    server_learning_rate: float = Field(default=1.0, gt=0, description="Server step size.")
    server_momentum: float = Field(default=0.9, ge=0, lt=1, description="Server momentum.")


class FedAdamConfig(StrategySettings):
    """Flower ``FedAdam``: Adam on the server over the averaged update (Reddi et al., ICLR 2021).

    Flower's ``eta_l`` (a client learning rate that FedAdam stores but never uses) is not
    offered: the sites' learning rate is ``train.lr``.
    """

    name: Literal["fedadam"] = "fedadam"
    eta: float = Field(default=1e-2, gt=0, description="Server learning rate.")
    beta_1: float = Field(default=0.9, ge=0, lt=1, description="First-moment decay.")
    beta_2: float = Field(default=0.99, ge=0, lt=1, description="Second-moment decay.")
    tau: float = Field(default=1e-3, gt=0, description="Adaptivity (Adam's epsilon).")


class FedMedianConfig(StrategySettings):
    """Flower ``FedMedian``: coordinate-wise median (Yin et al., ICML 2018)."""

    name: Literal["fedmedian"] = "fedmedian"

    def min_sites(self) -> int:
        return 3

    def why_min_sites(self) -> str:
        return "a median of two values is their mean, so it outvotes one bad site from three on"


class FedTrimmedAvgConfig(StrategySettings):
    """Flower ``FedTrimmedAvg``: coordinate-wise mean after cutting ``int(trim_beta * n)``
    values from each end (Yin et al., ICML 2018)."""

    name: Literal["fedtrimmedavg"] = "fedtrimmedavg"
    trim_beta: float = Field(
        default=0.2, gt=0, lt=0.5, description="Fraction cut from each end of every coordinate."
    )

    def min_sites(self) -> int:
        n = 1
        while int(self.trim_beta * n) < 1:  # Flower's cut: int(beta * n) from each end
            n += 1
        return n

    def why_min_sites(self) -> str:
        return (f"it cuts int({self.trim_beta:g} x n) values from each end, which is 0 below "
                f"{self.min_sites()} sites")


class KrumConfig(StrategySettings):
    """Flower ``Krum`` (Blanchard et al., NeurIPS 2017): the one update closest to its
    ``n - f - 2`` nearest neighbours becomes the new encoder."""

    name: Literal["krum"] = "krum"
    num_malicious_nodes: int = Field(
        default=0, ge=0, description="f: bad sites Krum is built to outvote; needs n >= 2f + 3.",
    )

    def min_sites(self) -> int:
        return 2 * self.num_malicious_nodes + 3

    def why_min_sites(self) -> str:
        return f"Krum needs n >= 2f + 3 sites with f = num_malicious_nodes = {self.num_malicious_nodes}"


class MultiKrumConfig(StrategySettings):
    """Flower ``MultiKrum`` (Blanchard et al., 2017): the ``num_nodes_to_select`` updates with
    the best Krum scores are averaged (weighted by ``num-examples``)."""

    name: Literal["multikrum"] = "multikrum"
    num_malicious_nodes: int = Field(
        default=0, ge=0, description="f: bad sites it is built to outvote; needs n >= 2f + 3.",
    )
    num_nodes_to_select: int = Field(
        default=2, ge=1, description="m: updates averaged; needs m <= n - f.",
    )

    def min_sites(self) -> int:
        f = self.num_malicious_nodes
        return max(2 * f + 3, self.num_nodes_to_select + f)

    def why_min_sites(self) -> str:
        return (f"MultiKrum needs n >= 2f + 3 and n >= m + f sites with f = num_malicious_nodes = "
                f"{self.num_malicious_nodes} and m = num_nodes_to_select = {self.num_nodes_to_select}")


class BulyanConfig(StrategySettings):
    """Flower ``Bulyan`` (El Mhamdi et al., ICML 2018): MultiKrum picks ``n - 2f`` updates,
    then each coordinate averages the ``n - 4f`` values closest to their median."""

    name: Literal["bulyan"] = "bulyan"
    num_malicious_nodes: int = Field(
        default=0, ge=0, description="f: bad sites it is built to outvote; needs n >= 4f + 3.",
    )

    def min_sites(self) -> int:
        return 4 * self.num_malicious_nodes + 3

    def why_min_sites(self) -> str:
        return (f"Bulyan needs n >= 4f + 3 accepted replies with f = num_malicious_nodes = "
                f"{self.num_malicious_nodes} (Flower skips a round with fewer)")


#: How site updates are combined: one of Flower's strategies, encoder-only
#: (server/strategy.py). A discriminated union on ``name``: each strategy's settings are
#: validated on their own, and a setting of another strategy is an error.
StrategyConfig = Annotated[
    FedAvgConfig
    | FedEmaConfig
    | FedProxConfig
    | FedAvgMConfig
    | FedAdamConfig
    | FedMedianConfig
    | FedTrimmedAvgConfig
    | KrumConfig
    | MultiKrumConfig
    | BulyanConfig,
    Field(discriminator="name"),
]

StrategyName = Literal[
    "fedavg", "fedema", "fedprox", "fedavgm", "fedadam", "fedmedian", "fedtrimmedavg",
    "krum", "multikrum", "bulyan",
]


#: The dtypes a site's encoder update may travel in (shared/transfer.py does the casts).
TransferDtype = Literal["float32", "bfloat16", "float16"]


class FederationConfig(FrozenModel):
    """The server's round protocol."""

    num_rounds: int = Field(default=5, ge=1)
    strategy: StrategyConfig = FedAvgConfig()

    @field_validator("strategy", mode="before")
    @classmethod
    def _name_only(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "name" not in value:
            return {**value, "name": "fedavg"}
        return value
    min_nodes: int = Field(default=2, ge=1, description="Sites needed before round 0 starts.")
    quorum: float = Field(
        default=0.5, gt=0, le=1,
        description="Fraction of sampled sites whose accepted replies must arrive for a round "
        "to count.",
    )
    round_timeout_s: float = Field(
        default=900.0, gt=0, description="Deadline for one round's replies; late sites are dropped."
    )
    connect_timeout_s: float = Field(
        default=300.0, gt=0, description="How long round 0 waits for min_nodes sites to connect."
    )
    max_update_norm_ratio: float = Field(
        default=10.0, gt=1, allow_inf_nan=False,
        description="A site's update (its encoder minus the one sent) whose L2 norm exceeds this "
        "multiple of the median update norm of the round's replies is rejected "
        "(server/update_checks.py). It can single out a site only from three replies on.",
    )
    max_weight_ratio: float = Field(
        default=2.0, ge=1, allow_inf_nan=False,
        description="A site's aggregation weight (its num-examples) is capped at this multiple "
        "of the median weight of the round's accepted replies.",
    )
    transfer_dtype: TransferDtype = Field(
        default="float32",
        description="The dtype in which each site sends its encoder update (shared/transfer.py): "
        "'bfloat16' or 'float16' halve a reply's bytes; the server casts every reply back to "
        "float32, aggregates in float32 and broadcasts the global encoder in float32. float32 "
        "stays the default until the quality benchmark's validation site has measured what the "
        "16-bit casts cost.",
    )

    @model_validator(mode="after")
    def _enough_sites(self) -> FederationConfig:
        needed = self.strategy.min_sites()
        if self.min_nodes < needed:
            raise ValueError(
                f"strategy {self.strategy.name!r} needs at least {needed} sites "
                f"({self.strategy.why_min_sites()}); got min_nodes = {self.min_nodes}. Fix: set "
                f"federation.min_nodes = {needed} (the run then waits for {needed} sites) and run "
                "with that many, or choose another strategy or fewer tolerated bad sites "
                "(docs/methods.md, Federated strategies)."
            )
        return self


#: Strategies whose new global encoder is the (equally weighted) mean of the sites'
#: encoders, so Flower's noise on that mean is the Gaussian mechanism accounted per round.
#: Not FedAvgM/FedAdam: their server state accumulates the exact means, so a released
#: round depends on earlier rounds' un-noised averages. Not the robust ones: a median or
#: trimmed mean has another sensitivity.
UPDATE_DP_STRATEGIES = ("fedavg", "fedema", "fedprox")


class UpdatePrivacyConfig(FrozenModel):
    """Optional differential privacy on the encoder updates (``[privacy.updates]``; off by default).

    Flower's fixed-clipping Gaussian mechanism at the level of sites: every site's update
    (its encoder minus the global one) is clipped to ``clipping_norm`` (at the site with
    Flower's ``fixedclipping_mod``, or at the server), the equally weighted average gets
    Gaussian noise of standard deviation ``noise_multiplier x clipping_norm / sites``,
    and Flower's RDP accountant composes the rounds (``server/update_privacy.py``). It
    bounds what the aggregated (and exported) encoder reveals about any one site's
    participation; it does not hide a site's update from the coordinator.
    """

    enabled: bool = Field(default=False, description="Add update DP to every training round.")
    clipping: Literal["client", "server"] = Field(
        default="client", description="Where updates are clipped: at each site before they "
        "leave ('client') or by the server before averaging ('server').")
    clipping_norm: float = Field(default=1.0, gt=0, description="L2 bound of one site's update.")
    noise_multiplier: float = Field(
        default=1.0, gt=0, description="Noise standard deviation in units of clipping_norm / sites.")
    target_delta: float = Field(default=1e-3, gt=0, lt=1,
                                description="delta at which epsilon is reported (and capped).")
    max_epsilon: float | None = Field(
        default=None, gt=0, description="Stop the run before a round that would take the "
        "accounted epsilon past this (the encoder trained so far is exported).")


class PrivacyConfig(FrozenModel):
    """What a site's statistics must satisfy before they may leave it (client/privacy.py).

    The privacy unit is the patient: ``epsilon`` bounds what one release reveals about any
    one patient of a site, however many studies the patient has (docs/privacy.md).
    """

    min_studies: int = Field(
        default=5, ge=1,
        description="k, in patients: a modality is released only when its noisy patient count "
        "clears k (with fewer than k patients: at most a 5 % chance); a site that releases no "
        "modality withholds its statistics. The name is kept from when the unit was a study.",
    )
    epsilon: float = Field(
        default=2.0, gt=0, allow_inf_nan=False,
        description="Pure-DP budget of one statistics release, all modalities and fields "
        "together, per patient (2: an observer's odds on any patient's presence change by at "
        "most e^2 = 7.4x; docs/privacy.md explains the choice).",
    )
    updates: UpdatePrivacyConfig = UpdatePrivacyConfig()


class TrackingConfig(FrozenModel):
    """Where the server's metrics go besides metrics.json (server/tracking.py).

    Server-side only: the ServerApp strips this section from the config it sends to sites.
    """

    tensorboard: bool = Field(
        default=True, description="Write TensorBoard event files to <out_dir>/tensorboard "
        "(view with `tensorboard --logdir <out_dir>`).")
    mlflow_uri: str | None = Field(
        default=None, description="An MLflow tracking URI (http://host:5000, sqlite:///abs/mlflow.db, "
        "file:///abs/mlruns) to log the same metrics to; needs fedmm's `mlflow` extra.")
    mlflow_experiment: str = Field(default="fedmm", min_length=1,
                                   description="The MLflow experiment the run is logged under.")

    @field_validator("mlflow_uri")
    @classmethod
    def _a_uri(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value.strip():
            raise ValueError(
                f"expected an MLflow tracking URI with a scheme (http://host:5000, "
                f"sqlite:///abs/mlflow.db or file:///abs/mlruns), got {value!r}; fix: add the scheme, "
                f"e.g. file://{value if value.startswith('/') else '/abs/' + value}")
        return value.strip() if value is not None else None


class SimulatedSitesConfig(FrozenModel):
    """Set by `simulate` only: where virtual site k finds its data and keeps its state."""

    data_root: Path
    site_dirs: tuple[str, ...] = Field(min_length=1)
    state_root: Path
    samples_dir: Path | None = Field(
        default=None, description="One folder for every virtual site's preprocessed studies, "
        "kept between runs on this machine (their file names hash each study's files and the "
        "preprocessing, so sites and runs never read another's); None: each site's own cache.")

    def site(self, partition_id: int) -> tuple[Path, Path]:
        """Return (data_dir, state_dir) of virtual site ``partition_id``."""
        if not 0 <= partition_id < len(self.site_dirs):
            raise ValueError(
                f"partition-id {partition_id} is out of range: the simulation has "
                f"{len(self.site_dirs)} sites ({list(self.site_dirs)})."
            )
        return (
            self.data_root / self.site_dirs[partition_id],
            self.state_root / f"site-{partition_id}",
        )


class RunConfig(FrozenModel):
    """Everything a pretraining run needs; validated by the ServerApp once."""

    seed: int = 0
    out_dir: Path | None = Field(
        default=None, description="Absolute folder for checkpoints, metrics and the encoder."
    )
    resume: bool = Field(default=False, description="Continue from out_dir's last checkpoint.")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    pretext: tuple[PretextConfig, ...] = Field(
        default=(PlaneIntersectionConfig(), VarianceCovarianceConfig(weight=0.5)), min_length=1,
        description="Pretext tasks trained together; the local loss is the weighted sum. "
        "A single table is accepted for one task. The default: plane_intersection (the best "
        "downstream Dice of the five tasks in benchmarks/results/pretext.md) with "
        "variance_covariance at weight 0.5, which keeps its features from collapsing "
        "(benchmarks/results/quality.md).",
    )
    train: TrainConfig = TrainConfig()
    federation: FederationConfig = FederationConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    tracking: TrackingConfig = TrackingConfig()
    sites: SimulatedSitesConfig | None = None

    @field_validator("pretext", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, dict | BaseModel):
            return (value,)
        return value

    @field_validator("pretext")
    @classmethod
    def _distinct_tasks(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        names = [t.name for t in value]
        if len(set(names)) != len(names):
            raise ValueError(f"each pretext task may appear once, got {names}; "
                             "merge the duplicates into one entry")
        return value

    @property
    def pretext_names(self) -> tuple[str, ...]:
        """The run's pretext task names, in config order."""
        return tuple(t.name for t in self.pretext)

    @model_validator(mode="after")
    def _update_dp_needs_a_mean(self) -> RunConfig:
        name = self.federation.strategy.name
        if self.privacy.updates.enabled and name not in UPDATE_DP_STRATEGIES:
            raise ValueError(
                f"privacy.updates needs a strategy that averages the sites' updates (its noise is "
                f"calibrated to a mean of clipped updates), one of {list(UPDATE_DP_STRATEGIES)}; "
                f"got federation.strategy = {name!r}. Fix: choose one of them, or turn update DP off.")
        return self

    @model_validator(mode="after")
    def _update_dp_needs_float32_transfer(self) -> RunConfig:
        transfer = self.federation.transfer_dtype
        if self.privacy.updates.enabled and transfer != "float32":
            raise ValueError(
                f"privacy.updates clips and noises float32 updates (Flower's clipping mods work on "
                f"the reply's arrays as sent); got federation.transfer_dtype = {transfer!r}. Fix: "
                "set federation.transfer_dtype = 'float32', or turn update DP off.")
        return self

    @model_validator(mode="after")
    def _absolute_out(self) -> RunConfig:
        if self.out_dir is not None and not self.out_dir.is_absolute():
            raise ValueError(
                f"out_dir must be an absolute path (the ServerApp's working directory is the "
                f"SuperLink's), got {str(self.out_dir)!r}."
            )
        if self.resume and self.out_dir is None:
            raise ValueError("resume=true needs out_dir: the folder of the run to continue.")
        return self

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str, *, source: str = "run config") -> RunConfig:
        """Parse and validate; errors name the source and every bad field."""
        try:
            raw: Any = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as err:
            raise ConfigError(f"{source}: expected JSON, got invalid text ({err}).") from err
        return validate_run_config(raw, source=source)


class SiteLimits(FrozenModel):
    """The most a site lets any run ask of it (site.toml ``[limits]``); the site decides.

    A run whose settings exceed one of these is refused at the site, whatever the
    coordinator sends (``client/site_limits.py``). The defaults equal fedmm's run defaults,
    so a default run passes and asking for more needs each site's consent.
    """

    max_epsilon_per_release: float = Field(
        default=PrivacyConfig().epsilon, gt=0,
        description="Largest privacy.epsilon of one statistics release this site makes.")
    max_epsilon_total: float = Field(
        default=3 * PrivacyConfig().epsilon, gt=0,
        description="Largest epsilon this site spends over its lifetime, all releases "
        "together (its privacy ledger in the state folder counts them).")
    min_k: int = Field(
        default=PrivacyConfig().min_studies, ge=1,
        description="Smallest privacy.min_studies (k) a run may use at this site.")
    max_batch_size: int = Field(
        default=32, ge=2, description="Largest data.batch_size (studies in memory at once).")
    max_voxels: int = Field(
        default=DataConfig().max_voxels, ge=8**3,
        description="Largest data.max_voxels (the per-volume size cap) a run may set.")


class SiteConfig(FrozenModel):
    """A site's own settings (Flower node_config). Never sent anywhere."""

    data_dir: Path
    state_dir: Path
    share_templates: bool = Field(
        default=False,
        description="This site agrees to send learnt BrainMVP templates (average images of "
        "its patients) when a run asks for them (masked_modality_reconstruction."
        "share_templates); without it such a run fails at this site with a clear error.",
    )
    limits: SiteLimits | None = Field(
        default=None,
        description="The site's own limits (a deployed site always has them; a simulated "
        "site, the researcher's own folder, has none).",
    )
    samples_dir: Path | None = Field(
        default=None,
        description="Where the site's preprocessed studies are cached (default "
        "state_dir/cache/samples; simulated sites share a machine-wide folder).",
    )


# --------------------------------------------------------------------------- errors


class ConfigError(ValueError):
    """A config that failed validation; the message is meant for a person."""


def validate_run_config(raw: dict[str, Any], *, source: str) -> RunConfig:
    """Validate a nested dict into a RunConfig with errors that say what to fix."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source=source, model=RunConfig)) from err


def format_validation_error(err: ValidationError, *, source: str, model: type[BaseModel]) -> str:
    """One line per problem: the dotted field, what arrived, what was expected, a suggestion."""
    lines = [f"Invalid {source}:"]
    for problem in err.errors():
        loc = ".".join(str(p) for p in problem["loc"])
        msg = problem["msg"]
        if problem["type"] == "extra_forbidden":
            known = _field_names(model, problem["loc"][:-1])
            hint = closest_hint(str(problem["loc"][-1]), known)
            msg = f"unknown setting. Known settings here: {sorted(known)}.{hint}"
        elif "input" in problem:
            msg = f"{msg} (got {problem['input']!r})"
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The config models an annotation can hold (through X | None, tuples and unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The settings known at ``loc``; a discriminated union's tag (e.g. the strategy name
    in ``federation.strategy.fedadam``) selects the member it names."""
    models = [model]
    for part in loc:
        inner = [m for c in models if isinstance(part, str) and part in c.model_fields
                 for m in _models_in(c.model_fields[part].annotation)]
        if not inner:
            tagged = [c for c in models if "name" in c.model_fields
                      and c.model_fields["name"].default == part]
            inner = tagged or (models if isinstance(part, int) else [])
        models = inner
    return list(models[0].model_fields) if len(models) == 1 else []
