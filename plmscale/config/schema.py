"""The configuration dataclasses: the one source of truth for an experiment.

YAML files pick a preset and override fields; ``--set a.b=value`` overrides them again; the DeepSpeed
JSON is generated from these (``plmscale.config.deepspeed``), never written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

ATTENTION_BACKENDS = ("sdpa", "fused-softmax", "reference")
"""Values of ``model.attention_backend`` (plmscale.models.common.attention_core implements them)."""


@dataclass
class ModelConfig:
    """Architecture of the network. Field names follow megatron-core."""

    family: str = "bert"
    """Registry name of the model family (see ``plmscale.families``)."""
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
    attention_backend: str = "sdpa"
    """"sdpa" (torch scaled_dot_product_attention: flash / memory-efficient kernels, no [s, s]
    scores where the mask allows), "fused-softmax" (scores + the fused scaled-masked-softmax kernel)
    or "reference" (plain torch). All three compute the same function (plmscale.models.common.attention_core)."""
    # -- options used by some families (defaults = BERT) --------------------------------------
    embedding_size: Optional[int] = None
    """Factorised embeddings (ALBERT, ELECTRA-small): embedding width E, projected to hidden_size."""
    num_decoder_layers: Optional[int] = None
    """Encoder-decoders (T5, BART): decoder depth; num_layers is the encoder's."""
    kv_channels: Optional[int] = None
    """Per-head width when it is not hidden_size / num_attention_heads (T5's d_kv)."""
    normalization: str = "layernorm"
    """"layernorm" or "rmsnorm" (T5: scale only, no mean subtraction, no bias)."""
    activation: str = "gelu"
    """FFN activation: "gelu" (form set by gelu_approximate), "relu" (T5 v1.0), "gated-gelu" (v1.1),
    "swiglu" (Llama: SiLU-gated, ``fc2(silu(fc1(x)) * fc1_up(x))``)."""
    add_bias_linear: bool = True
    """Biases in the linear layers (False for T5)."""
    position_embedding_type: str = "learned"
    """"learned" absolute positions, "relative" (T5's bucketed relative attention bias) or "rotary"
    (RoPE, Su et al. 2021, on q and k in every attention layer; Llama's half-split form)."""
    rotary_base: float = 10000.0
    """RoPE base (HF ``rope_theta``): Llama 1/2 10000, Llama 3 500000."""
    num_query_groups: Optional[int] = None
    """Grouped-query attention (Ainslie et al. 2023): key/value heads, each shared by
    num_attention_heads / num_query_groups query heads (HF ``num_key_value_heads``); None = one per
    query head (multi-head attention), 1 = multi-query. TP splits whole groups."""
    position_offset: int = 0
    """Learned-position index offset (RoBERTa: padding_idx + 1 = 2; BART: 2)."""
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    mem_len: int = 0
    """XLNet: Transformer-XL memory, the hidden states of up to this many earlier tokens of the same
    stream that every layer attends to (no gradient); 0 = none. Samples then hold
    ``objective.memory_segments`` consecutive segments."""
    share_layer_parameters: bool = False
    """ALBERT: one set of layer parameters used by every layer (kept as one set under PP)."""
    tie_word_embeddings: bool = True
    scale_tied_logits: bool = False
    """T5 v1.0: multiply the decoder output by 1/sqrt(hidden_size) before the tied projection."""
    generator_hidden_size: Optional[int] = None
    """ELECTRA: the generator's hidden size (1/4 to 1/3 of the discriminator's)."""
    generator_ffn_hidden_size: Optional[int] = None
    generator_num_attention_heads: Optional[int] = None
    generator_num_layers: Optional[int] = None
    task_type_vocab_size: int = 0
    """ERNIE 2.0: rows of the task-type embedding added to every token (HF ``ErnieModel``'s
    ``task_type_vocab_size`` with ``use_task_id``); 0 = no task embedding."""
    token_encoder: str = "characters"
    """ELMo: "characters" (the original char CNN) or "words" (an embedding of the token ids)."""
    char_cnn_filters: Optional[str] = None
    """ELMo's character CNN, "width:channels,..." (None = the original 1:32,...,7:1024)."""
    init_method: str = "normal"
    """"normal": every weight ~ N(0, init_std). "t5": T5's per-module scales (Mesh TensorFlow, as HF:
    embeddings 1, q (d_model*d_kv)^-1/2, k, v and FFN input d_model^-1/2, attention output
    (heads*d_kv)^-1/2, FFN output d_ff^-1/2, relative bias and untied head d_model^-1/2), which is
    where T5 puts the 1/sqrt(d) that its attention scores lack."""
    # -- mixture of experts (GPT, BERT, RoBERTa, T5; plmscale.models.moe) --------------------
    num_experts: int = 0
    """Routed experts per MoE layer (0 = dense model, no MoE)."""
    moe_layer_frequency: int = 1
    """Every k-th layer of a stack is an MoE layer (the last of each k: Switch's 2 = layers 1, 3, ...)."""
    moe_top_k: int = 1
    """Experts per token: 1 = Switch, 2 = GShard / Mixtral, more = DeepSeekMoE's fine-grained top-k."""
    moe_ffn_hidden_size: Optional[int] = None
    """Width of one expert's MLP (None = ffn_hidden_size; narrower for fine-grained experts)."""
    moe_shared_experts: int = 0
    """Always-on shared experts (DeepSeekMoE): a dense MLP of n x the expert width every token uses."""
    moe_shared_expert_gate: bool = False
    """Scale the shared experts' output by sigmoid(w . x) per token (Qwen2-MoE)."""
    expert_model_parallel_size: int = 1
    """Ranks the experts of a layer are split over (divides num_experts and the data-parallel size)."""
    moe_capacity_factor: float = 1.0
    """Expert capacity = ceil(top_k * factor * tokens / num_experts) per rank; routes beyond it are
    dropped (the token passes through the residual only)."""
    moe_dropless: bool = False
    """No capacity limit: every route is processed (capacity = the largest expert load)."""
    moe_router_jitter: bool = False
    """Multiply router inputs by U(0.99, 1.01) noise in training (Switch's jitter, DeepSpeed's)."""
    moe_aux_loss_coeff: float = 0.01
    """Weight of the load-balancing loss (Switch: E * sum_i f_i P_i; 0.01 in the paper)."""
    moe_z_loss_coeff: float = 0.0
    """Weight of the router z-loss, mean logsumexp(logits)^2 (ST-MoE uses 0.001)."""
    moe_expert_bias_rate: float = 0.0
    """Auxiliary-loss-free balancing (DeepSeek-V3; 0 = off, the paper's gamma = 0.001): a per-expert
    bias chooses the experts (never weights them), moved by rate * sign(mean load - load) after each
    optimizer step (plmscale.models.moe.balance). Usually with moe_aux_loss_coeff 0 or small."""


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
    """Directory written by ``python -m data_prep encode`` (manifest.json + Arrow shards). With
    ``paths`` set, it becomes the mixture's first source (whose tokenizer every source shares)."""
    paths: Optional[Union[list, str]] = None
    """A weighted mixture of shard directories, as Megatron's ``--data-path``: "0.3 dir_a 0.7 dir_b"
    or the list [0.3, dir_a, 0.7, dir_b]. Weights are normalised; global sample ``i`` comes from a
    source drawn by a seeded hash of ``i`` (the same stream on any DP size and after a resume); see
    plmscale.data.mixture. None = ``path`` alone."""
    task_prefixes: Optional[list] = None
    """T5-style multi-task mixtures: one text per source of ``paths`` ("" = none), e.g.
    ["summarize: ", ""], tokenized with the sources' tokenizer and put before every encoder input of
    that source (encoder-decoder families: t5, bart)."""
    valid_path: Optional[str] = None
    """Shard directory evaluated every ``train.eval_interval`` steps (same tokenizer as training)."""
    valid_fraction: float = 0.0
    """Without ``valid_path``: hold out this fraction of each source's documents (at least one;
    chosen by a fixed seed, so the same documents for every run of that data) for evaluation;
    training never reads them. 0 = no held-out split."""
    seq_length: int = 128
    short_seq_prob: float = 0.1
    """Probability of a shorter target length (BERT's trick so the model also sees short inputs)."""
    decoder_seq_length: Optional[int] = None
    """Encoder-decoders: target length (None = derived from seq_length and the objective)."""
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
    sentence_order_prediction: bool = False
    """ALBERT's SOP: the same two consecutive segments, swapped for negatives."""
    masking: str = "token"
    """MLM masking unit: "token", "whole_word", "ngram", "span" (SpanBERT), "phrase", "entity"."""
    max_ngram: int = 3
    """n-gram masking: n <= max_ngram with p(n) proportional to 1/n (ALBERT)."""
    span_geometric_p: float = 0.2
    span_max_length: int = 10
    """SpanBERT: span lengths ~ Geometric(p) clipped at span_max_length, in words."""
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    """T5 span corruption."""
    infilling_ratio: float = 0.3
    poisson_lambda: float = 3.0
    permute_sentences: bool = True
    rotate_document: bool = False
    token_masking_ratio: float = 0.0
    token_deletion_ratio: float = 0.0
    """BART noising (defaults: the paper's best, text infilling 30% + sentence permutation)."""
    rtd_weight: float = 50.0
    """ELECTRA: loss = MLM_generator + rtd_weight * RTD."""
    reset_attention_at_document_boundary: bool = False
    """GPT: tokens do not attend across document separators inside a packed sequence."""
    permutation_mask_alpha: int = 6
    """XLNet: K, about 1/K of the tokens are predicted, each span inside a context of K*n tokens
    (the original code's mask_alpha)."""
    permutation_max_span: int = 5
    """XLNet: span lengths n = 1..max with p(n) proportional to 1/n."""
    memory_segments: int = 2
    """XLNet with ``model.mem_len`` > 0: consecutive segments of one stream per sample, run in order
    with the memory carried from each to the next (the first has none)."""
    masking_schedule: Optional[str] = None
    """Masking strategy over training steps, "name:start_step[:weight],..." (e.g. ERNIE 1.0's
    "token:0,phrase:1000,entity:2000"); None = ``masking`` throughout (plmscale.objectives.schedule)."""
    masking_schedule_mode: str = "stages"
    """"stages" (ERNIE 1.0: one strategy per step range) or "continual" (ERNIE 2.0: strategies join at
    their start step and stay, each sample draws one with the normalised weights)."""
    task_schedule: Optional[str] = None
    """ERNIE 2.0's continual multi-task schedule, "task:start_step[:weight],..." over the tasks of
    plmscale.objectives.ernie_tasks (e.g. "masking:0,capitalization:1000:0.5"): tasks join at their
    start step and stay; each sample draws one task with the normalised weights."""
    sentence_reorder_max_segments: int = 3
    """ERNIE 2.0 sentence reordering: a paragraph is cut into 1..m segments (m = this) and shuffled;
    the classes are the sum over n = 1..m of n! orders."""
    sentence_distance_weights: str = "1,1,1"
    """ERNIE 2.0 sentence distance: relative frequencies of its classes adjacent, same document,
    other document."""
    span_boundary_objective: bool = False
    """SpanBERT's SBO: samples also carry sbo_left / sbo_right / sbo_position per masked token (see
    plmscale.objectives.span_boundary); the model must attach SpanBoundaryHead to use them."""
    distillation_teacher_path: Optional[str] = None
    """DistilBERT: the teacher, a DeepSpeed checkpoint directory written by plmscale BERT training
    (``train.save_dir``; any TP layout, ZeRO stage 0-2)."""
    distillation_init_from_teacher: bool = True
    """DistilBERT: start the student from the teacher's embeddings, every other layer and MLM head (Sanh
    et al.); False keeps plmscale's random initialisation (the paper's "random init" ablation)."""
    distillation_temperature: float = 2.0
    """DistilBERT: softmax temperature T of the soft targets; the KL term is scaled by T^2."""
    distillation_alpha_ce: float = 5.0
    distillation_alpha_mlm: float = 2.0
    distillation_alpha_cos: float = 1.0
    """DistilBERT: loss = alpha_ce * KL(teacher || student at T) * T^2 + alpha_mlm * MLM + alpha_cos *
    (1 - cos(student, teacher last hidden states)); defaults are Sanh et al.'s training command."""
    objective_weights: Optional[str] = None
    """Mixture of a unified model's objectives, "name:weight,..." (normalised): UniLM draws one
    attention mask per sample (bidirectional, seq2seq, left_to_right, right_to_left; default
    2:2:1:1 = 1/3, 1/3, 1/6, 1/6), GLM one objective per batch (blank, sentence, document; default
    blank only; GLM-10B: blank:0.5,sentence:0.3,document:0.2). None = the family's default."""
    ngram_probability: float = 0.2
    """UniLM: share of the masked units that are n-grams of 2..max_ngram tokens (uniform), the rest
    single tokens (UniLM: 20% bigrams or trigrams)."""


@dataclass
class TrainConfig:
    """Optimisation, schedule, logging and checkpointing."""

    seed: int = 1234
    micro_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    train_steps: int = 100
    lr: float = 1e-4
    min_lr: float = 0.0
    """The floor: where linear, cosine and WSD decay end, and inverse_sqrt's lower bound."""
    warmup_steps: int = 10
    lr_schedule: str = "linear"
    """"linear", "cosine", "constant", "inverse_sqrt" (T5) or "wsd" (warmup-stable-decay); the
    formulas are in plmscale.training.schedules."""
    wsd_decay_fraction: float = 0.1
    """WSD: the last fraction of train_steps over which the rate decays to min_lr."""
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-6
    grad_clip: float = 1.0
    precision: str = "fp32"
    """"fp32", "bf16" or "fp16" (the latter two under DeepSpeed's mixed precision)."""
    log_interval: int = 10
    eval_interval: int = 0
    """Evaluate on the validation data every N steps and at the end (0 = never)."""
    eval_iters: int = 10
    """Batches per evaluation, each a global batch of a training step's size; the same batches at
    every evaluation (``data.valid_path`` or the ``data.valid_fraction`` split)."""
    save_interval: int = 0
    """Save a checkpoint every N steps (0 = only at the end when save_dir is set)."""
    save_dir: Optional[str] = None
    load_dir: Optional[str] = None
    """Resume from the latest checkpoint in this directory (model, optimizer, schedule, step, data)."""
    init_from: Optional[str] = None
    """Start from the weights of this checkpoint directory (any TP x PP x ZeRO layout, e.g. written
    by ``plmscale import`` from a Hugging Face model) at step 0 with a fresh optimizer and schedule:
    continued pretraining. Its model fields must equal this run's (dropout aside). Ignored when the
    run resumes (``load_dir`` / ``auto_resume``)."""
    init_optimizer: bool = False
    """With ``init_from``: also keep its optimizer state (Adam moments); the checkpoint must then have
    this run's TP, PP and ZeRO layout. The step and schedule still start at 0."""
    tensorboard_dir: Optional[str] = None
    progress_bar: bool = True
    keep_last_n: int = 0
    """Keep only the newest N complete checkpoints in save_dir (0 = keep all); older ones are
    deleted only after a newer one is complete."""
    resume_fallback: bool = True
    """When the newest checkpoint in load_dir is incomplete or fails verification, warn and resume
    from the newest one that passes (False: stop with the error)."""
    skip_nonfinite: bool = True
    """Skip (do not apply) an optimiser step whose loss or gradient norm is NaN/inf on any rank."""
    spike_window: int = 50
    """Losses of the last N applied steps form the spike rule's rolling mean and std."""
    spike_std_factor: float = 0.0
    """Skip a step whose loss exceeds rolling mean + factor * std (0 = no spike rule)."""
    grad_norm_spike_std_factor: float = 0.0
    """Skip a step whose global gradient norm (before clipping) exceeds the rolling mean + factor *
    std of the last ``spike_window`` applied steps' norms (0 = no rule; costs one norm reduction
    per step, ``plmscale.training.guards``)."""
    max_consecutive_skips: int = 5
    """Stop the run (with a checkpoint of the last good state) after this many skips in a row."""
    collective_timeout_s: float = 1800.0
    """A collective that has not completed after this many seconds fails instead of hanging."""
    dead_rank_timeout_s: float = 60.0
    """A rank whose heartbeat is older than this is declared gone; the others exit non-zero."""
    auto_resume: bool = False
    """Continue from the latest complete checkpoint in ``save_dir`` when there is one (a requeued or
    resubmitted job); else start as ``load_dir`` says (from scratch when it is unset)."""
    exit_duration_minutes: float = 0.0
    """Checkpoint and stop (exit 75) after this many minutes of training, before a job's wall-clock
    limit (0 = no limit)."""
    stop_signals: str = "SIGTERM,SIGUSR1"
    """Signals that make every rank checkpoint after the current step and stop (exit 75)."""
    stop_file: Optional[str] = None
    """When this file exists, every rank checkpoints after the current step and stops (exit 75): a
    kill switch that reaches ranks whatever launcher sits between them and the batch script."""
    requeue: bool = True
    """After such a stop under SLURM, rank 0 runs ``scontrol requeue $SLURM_JOB_ID``."""
    compile: bool = False
    """``torch.compile`` each transformer layer (torchtitan's per-block compile; Inductor, fullgraph)
    before the DeepSpeed engine is built, in every layout; the first steps then include the
    compilation. Dropout masks come from Inductor's generator: reproducible with the same seed and
    across a resume, but not the eager run's masks. Refused with tensor parallelism
    (plmscale.training.compile says why)."""
    peak_tflops: Optional[float] = None
    """One device's peak TFLOP/s for the MFU in the log; None = the detected GPU's (A100, H100,
    H200 profiles of plmscale.perf.gpus in the training precision), no MFU on CPU."""


@dataclass
class ExperimentConfig:
    """Everything one training run needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
