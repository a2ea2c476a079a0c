"""The T5 family (span corruption; v1.0 and v1.1 layouts)."""

from plmscale.export.generation import GenerationSpec
from plmscale.export.hf import HFExport
from plmscale.families import MOE_FIELDS, NO_NSP, Family, FamilyFields
from plmscale.families.t5.hf import HF_PART, from_hf_config, hf_config, to_hf_state_dict
from plmscale.families.t5.model import T5ForConditionalGeneration, t5_initialize, t5_pieces
from plmscale.families.t5.presets import PRESETS
from plmscale.families.t5.samples import T5Samples

FAMILY = Family(
    name="t5",
    build=lambda cfg: T5ForConditionalGeneration(cfg.model, cfg.train.precision),
    pieces=lambda cfg: t5_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: T5Samples(corpus, cfg.data, cfg.objective, cfg.train.seed),
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    from_hf_config=from_hf_config,
    fields=FamilyFields(
        model=("num_decoder_layers", "normalization", "activation", "add_bias_linear",
               "position_embedding_type", "relative_attention_num_buckets",
               "relative_attention_max_distance", "tie_word_embeddings", "scale_tied_logits",
               "init_method") + MOE_FIELDS,
        objective=("noise_density", "mean_noise_span_length"), objective_defaults=NO_NSP),
    presets=PRESETS,
    hf_export=HFExport((HF_PART,), "eos",
                       lambda tokens, cfg: {"pad_token_id": tokens.pad, "eos_token_id": tokens.eos,
                                            "decoder_start_token_id": tokens.pad}),
    generation=GenerationSpec(suffix=("eos",)),  # span-corruption inputs end in eos
    initialize=t5_initialize,
)
