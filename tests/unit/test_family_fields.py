"""Validation refuses, before anything is built, every optional config field a family would ignore
and every objective it cannot honour (plmscale.config.families), naming the families that read it;
each family starts from its own objective defaults; every shipped config passes."""

import dataclasses

import pytest

from plmscale.config import ConfigError, load_config, validate_config
from plmscale.config.families import (OPTIONAL_OBJECTIVE_FIELDS, family_fields,
                                      optional_model_fields, readers)
from plmscale.config.schema import ModelConfig, ObjectiveConfig
from plmscale.families import FAMILY_MODULES

# A value away from the schema default for every optional field (YAML-style override text).
SET = {"embedding_size": "64", "num_decoder_layers": "3", "normalization": "rmsnorm",
       "activation": "relu", "add_bias_linear": "false", "position_embedding_type": "relative",
       "position_offset": "2", "relative_attention_num_buckets": "16",
       "relative_attention_max_distance": "64", "share_layer_parameters": "true",
       "tie_word_embeddings": "false", "scale_tied_logits": "true", "generator_hidden_size": "64",
       "generator_ffn_hidden_size": "256", "generator_num_attention_heads": "1",
       "generator_num_layers": "1", "init_method": "t5", "task_type_vocab_size": "3",
       "token_encoder": "words", "char_cnn_filters": "1:8,2:8", "rotary_base": "500000.0",
       "num_query_groups": "2",
       "mlm_probability": "0.2", "mask_token_fraction": "0.7", "random_token_fraction": "0.2",
       "next_sentence_prediction": "true", "sentence_order_prediction": "true", "masking": "span",
       "max_ngram": "2", "span_geometric_p": "0.3", "span_max_length": "5", "noise_density": "0.3",
       "mean_noise_span_length": "2.0", "infilling_ratio": "0.2", "poisson_lambda": "2.0",
       "permute_sentences": "false", "rotate_document": "true", "token_masking_ratio": "0.1",
       "token_deletion_ratio": "0.1", "rtd_weight": "10.0",
       "reset_attention_at_document_boundary": "true",
       "masking_schedule": "token:0,span:100", "masking_schedule_mode": "continual",
       "task_schedule": "masking:0,capitalization:10", "sentence_reorder_max_segments": "4",
       "sentence_distance_weights": "1,2,1",
       "span_boundary_objective": "true", "distillation_teacher_path": "somewhere",
       "distillation_init_from_teacher": "false", "distillation_temperature": "3.0",
       "distillation_alpha_ce": "1.0", "distillation_alpha_mlm": "1.0",
       "distillation_alpha_cos": "0.0", "objective_weights": "bidirectional:1",
       "ngram_probability": "0.3",
       "permutation_mask_alpha": "4", "permutation_max_span": "3", "mem_len": "16",
       "memory_segments": "3",
       "num_experts": "4", "moe_layer_frequency": "2", "moe_top_k": "2", "moe_ffn_hidden_size": "64",
       "moe_shared_experts": "1", "moe_shared_expert_gate": "true", "expert_model_parallel_size": "2",
       "moe_capacity_factor": "2.0", "moe_dropless": "true", "moe_router_jitter": "true",
       "moe_aux_loss_coeff": "0.1", "moe_z_loss_coeff": "0.01",
       "moe_expert_bias_rate": "0.001"}


def _ignored(family: str) -> list[tuple[str, str]]:
    declared = family_fields(family)
    return ([("model", n) for n in optional_model_fields() if n not in declared.model]
            + [("objective", n) for n in OPTIONAL_OBJECTIVE_FIELDS if n not in declared.objective])


def test_every_optional_field_has_a_test_value():
    assert set(SET) == set(optional_model_fields()) | set(OPTIONAL_OBJECTIVE_FIELDS)
    defaults = {**dataclasses.asdict(ModelConfig()), **dataclasses.asdict(ObjectiveConfig())}
    # Every value differs from the schema default (NSP's default is on: its test value must be
    # judged against the families' own default, off, which test_family_objective_defaults checks).
    assert [n for n, v in SET.items() if str(defaults[n]).lower() == v and n != "next_sentence_prediction"] == []


@pytest.mark.parametrize("family", sorted(FAMILY_MODULES))
def test_every_ignored_field_is_refused(family):
    ignored = _ignored(family)
    assert ignored, family
    for section, name in ignored:
        if family == "bert" and name == "next_sentence_prediction":
            continue
        cfg = load_config(None, [f"model.family={family}", f"{section}.{name}={SET[name]}"])
        with pytest.raises(ConfigError) as error:
            validate_config(cfg, world_size=1)
        message = str(error.value)
        assert f"{section}.{name}=" in message and f"model.family={family!r}" in message
        assert f"read by: {', '.join(readers(section, name)) or 'no family'}" in message


@pytest.mark.parametrize("family", sorted(FAMILY_MODULES))
def test_fields_a_family_reads_pass(family):
    declared = family_fields(family)
    for name in declared.objective:
        if name in ("masking_schedule", "masking", "max_ngram", "span_geometric_p",
                    "span_max_length", "masking_schedule_mode", "distillation_teacher_path"):
            continue  # values checked elsewhere (strategy names, files)
        cfg = load_config(None, [f"model.family={family}", f"objective.{name}={SET[name]}"])
        validate_config(cfg, world_size=1)


def test_masking_schedule_is_read_by_bert_and_ernie_only():
    for family in ("albert", "electra", "distilbert", "roberta"):
        cfg = load_config(None, [f"model.family={family}",
                                 "objective.masking_schedule=token:0,span:100"])
        with pytest.raises(ConfigError, match=r"objective.masking_schedule=.*read by: bert, ernie\)"):
            validate_config(cfg, world_size=1)


def test_family_objective_defaults(tmp_path):
    """RoBERTa (and every family but BERT and UniLM) starts without NSP; a YAML asking RoBERTa for NSP is
    refused, as RoBERTa cannot honour it."""
    assert load_config(None, ["model.family=roberta"]).objective.next_sentence_prediction is False
    assert load_config(None, ["model.preset=roberta-tiny"]).objective.next_sentence_prediction is False
    assert load_config(None, []).objective.next_sentence_prediction is True  # BERT
    yaml = tmp_path / "roberta_nsp.yaml"
    yaml.write_text("model:\n  family: roberta\nobjective:\n  next_sentence_prediction: true\n")
    cfg = load_config(yaml)
    with pytest.raises(ConfigError, match=r"objective.next_sentence_prediction=True \(read by: bert, unilm\)"):
        validate_config(cfg, world_size=1)


def test_shipped_configs_pass(repo):
    for path in sorted((repo / "configs").glob("*.yaml")):
        cfg = load_config(path)
        p = cfg.parallel
        # The smallest world of the layout: expert parallelism needs that many data-parallel ranks.
        validate_config(cfg, p.tensor_model_parallel_size * p.pipeline_model_parallel_size
                        * cfg.model.expert_model_parallel_size)


def test_dry_run_reports_each_network(repo, tmp_path):
    """``--dry-run`` prints ELECTRA's discriminator and generator as HF counts them (electra-small:
    SPEC.md's 13,549,057 and ElectraForMaskedLM's 13,546,682) besides the total, and DistilBERT's
    student."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, WORLD_SIZE="1", RANK="0", LOCAL_RANK="0")
    env.pop("MASTER_PORT", None)
    printed = {}
    runs = {"electra-small": ("electra_tiny", []),
            "distilbert-base": ("distilbert_tiny", ["objective.distillation_teacher_path=null"])}
    for preset, (config, extra) in runs.items():
        sets = [f"model.preset={preset}", "model.vocab_size=30522",
                "model.max_position_embeddings=512", "parallel.tensor_model_parallel_size=1", *extra]
        out = subprocess.run([sys.executable, str(repo / "launch/train.py"), "--config",
                              str(repo / "configs" / f"{config}.yaml"), "--dry-run",
                              *[arg for s in sets for arg in ("--set", s)]],
                             capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        printed[preset] = [line for line in out.stdout.splitlines() if line.startswith("parameters")]
    assert printed["electra-small"] == [
        "parameters: 23,122,875 (electra, unpadded, whole model)",
        "parameters of the discriminator: 13,549,057", "parameters of the generator: 13,546,682"]
    assert printed["distilbert-base"] == [  # HF distilbert-base-uncased: 66,985,530
        "parameters: 66,985,530 (distilbert, unpadded, whole model)",
        "parameters of the student: 66,985,530"]
