"""Blocks every family is assembled from, built on megatron-core tensor-parallel layers."""

from plmscale.models.common.attention import SelfAttention
from plmscale.models.common.embeddings import Embeddings
from plmscale.models.common.heads import (TiedVocabParallelLogits, gather_vocab_logits,
                                          labelled_metrics, vocab_parallel_loss_and_accuracy)
from plmscale.models.common.megatron import megatron_config, padded_vocab_size, tp_world
from plmscale.models.common.mlp import MLP
from plmscale.models.common.transformer import PostLNLayer, padding_mask

__all__ = ["Embeddings", "MLP", "PostLNLayer", "SelfAttention", "TiedVocabParallelLogits",
           "gather_vocab_logits", "labelled_metrics", "megatron_config", "padded_vocab_size",
           "padding_mask", "tp_world", "vocab_parallel_loss_and_accuracy"]
