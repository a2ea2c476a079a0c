"""The configuration dataclasses: the one source of truth for an experiment.

YAML files pick a preset and override fields; ``--set a.b=value`` overrides them again; the DeepSpeed
JSON is generated from these (``plmscale.config.deepspeed``), never written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class ModelConfig:
    """Architecture of the network. Field names follow megatron-core."""

    family: str = "bert"
    """Registry name of the model family (see ``plmscale.models.registry``)."""
    preset: Optional[str] = None
    """Named size from ``plmscale.config.presets``; its fields are applied before the YAML's own."""
    num_layers: int = 12
    hidden_size: int = 768
    num_attention_heads: int = 12
    ffn_hidden_size: int = 3072
    vocab_size: int = 30522
    """True vocabulary size. The embedding is padded for tensor parallelism; counts exclude padding."""
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    layernorm_epsilon: float = 1e-12
    init_std: float = 0.02
    gelu_approximate: str = "none"
    """GELU form: "none" (erf, as BERT) or "tanh" (as GPT-2)."""
    make_vocab_size_divisible_by: int = 128
    """The padded vocabulary is a multiple of this times the tensor-parallel size (as Megatron)."""
    use_fused_kernels: Optional[bool] = None
    """Fused CUDA bias-GELU and masked softmax: None = on when running on a GPU with kernels built."""


@dataclass
class ParallelConfig:
    """How the model and the data are split over ranks. Data-parallel size = world / (tp * pp)."""

    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    zero_stage: int = 1
    """DeepSpeed ZeRO stage 0-3 (stages 2 and 3 cannot be combined with pipeline parallelism)."""


@dataclass
class DataConfig:
    """Where the preprocessed shards are and how samples are cut from them."""

    path: str = "runs/demo/shards"
    """Directory written by ``python -m data_prep encode`` (manifest.json + Arrow shards)."""
    seq_length: int = 128
    short_seq_prob: float = 0.1
    """Probability of a shorter target length (BERT's trick so the model also sees short inputs)."""
    verify_checksums: bool = True
    """Check every shard's sha256 against the manifest when opening the corpus."""
    num_workers: int = 1
    """Data-loader worker processes building samples ahead of the training step (0 = in-process)."""


@dataclass
class ObjectiveConfig:
    """The pretraining objective's statistics (defaults: BERT)."""

    mlm_probability: float = 0.15
    mask_token_fraction: float = 0.8
    random_token_fraction: float = 0.1
    """The remaining 1 - mask - random of the selected tokens stay unchanged."""
    next_sentence_prediction: bool = True


@dataclass
class TrainConfig:
    """Optimisation, schedule, logging and checkpointing."""

    seed: int = 1234
    micro_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    train_steps: int = 100
    lr: float = 1e-4
    min_lr: float = 0.0
    warmup_steps: int = 10
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-6
    grad_clip: float = 1.0
    precision: str = "fp32"
    """"fp32", "bf16" or "fp16" (the latter two under DeepSpeed's mixed precision)."""
    log_interval: int = 10
    save_interval: int = 0
    """Save a checkpoint every N steps (0 = only at the end when save_dir is set)."""
    save_dir: Optional[str] = None
    load_dir: Optional[str] = None
    """Resume from the latest checkpoint in this directory (model, optimizer, schedule, step, data)."""
    tensorboard_dir: Optional[str] = None
    progress_bar: bool = True


@dataclass
class ExperimentConfig:
    """Everything one training run needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
