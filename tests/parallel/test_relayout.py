"""Resume on another layout (issue 14): a checkpoint saved at TP2 x DP1 and at DP2 (ZeRO-1) resumes
at TP1 x DP2, TP2 x PP2 (4 ranks) and DP1, and the next 3 steps' losses equal those of a resume at
the layout it was saved at (same weights, Adam moments and data). The global batch is kept
(micro-batch x DP x accumulation = 16 samples), so both runs read the same samples per step."""

import pytest
from bert_workers import train_runs
from closeness import assert_close, closeness
from harness import run_ranks
from relayout_workers import runs_and_moment_checks

pytestmark = pytest.mark.slow

BASE = ["model.hidden_dropout=0", "model.attention_dropout=0", "train.micro_batch_size=8"]
# name -> layout overrides; the product DP x accumulation is 2 everywhere.
SAVED = {"tp2": ["parallel.tensor_model_parallel_size=2", "parallel.zero_stage=1",
                 "train.gradient_accumulation_steps=2"],
         "dp2": ["parallel.zero_stage=1", "train.gradient_accumulation_steps=1"]}
TP1_DP2 = ["parallel.zero_stage=1", "train.gradient_accumulation_steps=1"]
TP2_PP2 = ["parallel.tensor_model_parallel_size=2", "parallel.pipeline_model_parallel_size=2",
           "parallel.zero_stage=1", "train.gradient_accumulation_steps=2"]
DP1 = ["parallel.zero_stage=1", "train.gradient_accumulation_steps=2"]
DP1_ZERO0 = ["parallel.zero_stage=0", "train.gradient_accumulation_steps=2"]


def resume(ckpt, layout):
    return BASE + layout + ["train.train_steps=6", f"train.load_dir={ckpt}"]


def losses(history):
    return [h["loss"] for h in history]


def test_resume_on_other_layouts_continues_as_at_the_saved_one(demo_shards, tmp_path):
    ckpt = {name: str(tmp_path / name) for name in SAVED}
    saves = [BASE + layout + ["train.train_steps=3", f"train.save_dir={ckpt[name]}"]
             for name, layout in SAVED.items()]
    # 2 ranks: both saves, the reference resumes at the saved layouts, TP2 x DP1 -> TP1 x DP2.
    histories = run_ranks(2, train_runs, str(demo_shards), saves + [
        resume(ckpt["tp2"], SAVED["tp2"]), resume(ckpt["dp2"], SAVED["dp2"]),
        resume(ckpt["tp2"], TP1_DP2)])[0]
    reference = {"tp2": histories[2], "dp2": histories[3]}
    assert all(len(h) == 3 for h in histories)
    assert_close(losses(histories[4]), losses(reference["tp2"]), "TP2xDP1 -> TP1xDP2 losses")
    # The schedule continued (not restarted): the same rates as at the saved layout.
    assert [h["lr"] for h in histories[4]] == pytest.approx([h["lr"] for h in reference["tp2"]])

    # 4 ranks: DP2 -> TP2 x PP2 (TP, PP and DP change at once; one 4-rank group is the costly
    # part of this test, and TP2's merge is covered by the other two resumes).
    (pipelined,) = run_ranks(4, train_runs, str(demo_shards), [resume(ckpt["dp2"], TP2_PP2)])[0]
    assert_close(losses(pipelined), losses(reference["dp2"]), "DP2 -> TP2xPP2 losses")

    # 1 rank: both -> DP1 (ZeRO-1, and ZeRO-0 for the TP2 one); the resumed engines hold exactly
    # the files' weights and moments; a resume with the moments dropped goes elsewhere.
    single = run_ranks(1, runs_and_moment_checks, str(demo_shards),
                       [resume(ckpt["dp2"], DP1), resume(ckpt["tp2"], DP1_ZERO0)],
                       [resume(ckpt["dp2"], DP1), resume(ckpt["tp2"], DP1_ZERO0)],
                       resume(ckpt["dp2"], DP1))[0]
    assert_close(losses(single["histories"][0]), losses(reference["dp2"]), "DP2 -> DP1 losses")
    assert_close(losses(single["histories"][1]), losses(reference["tp2"]),
                 "TP2 ZeRO-1 -> DP1 ZeRO-0 losses")
    for check in single["moments"]:
        assert check["max_diff"] == 0.0, check
        assert check["steps"] == [3] and check["saved_step"] == 3 and check["lr_step"] == 3, check
        assert check["moment_scale"] > 0, check
    dropped = closeness(losses(single["dropped"]), losses(reference["dp2"]), "dropped moments")
    assert not dropped.ok, f"losses without the Adam moments still match: {dropped}"
