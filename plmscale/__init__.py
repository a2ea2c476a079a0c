"""plmscale: pretraining of language-model families on megatron-core tensor parallelism and DeepSpeed.

Subpackages: ``config`` (dataclasses, presets, DeepSpeed config generation), ``parallel`` (process
groups, layout-independent initialisation), ``models`` (families on shared tensor-parallel blocks),
``objectives`` (batch corruption and losses), ``data`` (memory-mapped shard datasets), ``training``
(engine, loop, checkpoints, logging), ``kernels`` (fused CUDA kernels with torch fallbacks).
"""

__version__ = "0.1.0"
