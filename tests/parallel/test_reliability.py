"""Faults injected into real runs on 2 gloo ranks: a NaN loss on one rank (every ZeRO stage), a rank
dying inside the checkpoint commit, truncated and bit-flipped checkpoint files, shards of another
tokenizer, and runs cut off after a checkpoint and resumed twice (three families, PP=2)."""

import pytest
from closeness import assert_close
from harness import run_ranks
from reliability_workers import (crash_in_commit, nan_guard_runs, resume_after_faults,
                                 three_times_three)

pytestmark = pytest.mark.slow


def test_nan_loss_on_one_rank_is_skipped_in_every_zero_stage(demo_shards, tmp_path):
    """NaN at the 3rd step on rank 1: weights, Adam moments, step counts and LR bit-identical
    across it, and training goes on (a loss spike, 50x, is skipped the same way); NaN twice in a row (= max_consecutive_skips): the run stops
    with a checkpoint of the last good state (step 4). Without the guard (control, ZeRO-0) the NaN
    reaches the weights, so the comparison can fail."""
    ranks = run_ranks(2, nan_guard_runs, str(demo_shards), str(tmp_path))
    for rank in ranks:
        check_grad_norm_spikes(rank.pop("grad_spike"))
        for stage, result in rank.items():
            if stage == "control":
                assert result["changed_by_skip"], "the NaN never reached the weights"
                continue
            if stage == "spike":
                assert result["skip_flags"] == [0, 0, 0, 0, 1, 0], result["skip_flags"]
                assert result["changed_by_skip"] == [], result["changed_by_skip"][:5]
                continue
            assert result["skip_flags"] == [0, 0, 1, 0, 0, 1, 1], stage
            assert result["changed_by_skip"] == [], (stage, result["changed_by_skip"][:5])
            assert result["changed_after"], stage  # training went on after the skip
            assert "stopped after 2 skipped steps in a row" in result["stopped"], stage
            assert "last good state (step 4)" in result["stopped"], stage
            assert result["latest"] == "step4" and result["final_equals_saved"], stage


def check_grad_norm_spikes(results: dict) -> None:
    """The gradient-norm rule (run in the same rank group as the test above): a gradient x100 on
    one rank at step 5 is skipped in every ZeRO stage with nothing changed, for the gradient norm
    (the loss is unchanged); the guard's norm is DeepSpeed's own (ZeRO-1-3 report it after an
    applied step; ZeRO-0 reports none); with the rule off (control) the spike is applied."""
    for stage in (0, 1, 2, 3):
        result = results[stage]
        assert result["skip_flags"] == [0, 0, 0, 0, 1, 0], (stage, result["skip_flags"])
        assert result["reasons"][4].startswith("gradient-norm spike"), result["reasons"]
        assert result["changed_by_skip"] == [], (stage, result["changed_by_skip"][:5])
        applied = [norms for norms, skipped in zip(result["norms"], result["skip_flags"])
                   if not skipped]
        assert all(ours > 0 for ours, _ in applied), (stage, applied)
        if stage:
            assert_close([ours for ours, _ in applied], [theirs for _, theirs in applied],
                         f"ZeRO-{stage} guard's grad norm vs DeepSpeed's")
        spiked, before = result["norms"][4][0], [ours for ours, _ in result["norms"][:4]]
        assert spiked > 10 * max(before), (stage, spiked, before)
    control = results["control"]
    assert control["skip_flags"] == [0] * 5 and control["changed_by_skip"], control["skip_flags"]


def test_crash_in_commit_and_damaged_files_fall_back(demo_shards, tmp_path_factory, repo):
    """Rank 1 dies between writing its step-4 files and the commit: step4 stays incomplete, the
    next start resumes from step2 and its losses equal the uninterrupted run's. A truncated
    (step6) and a bit-flipped (step4) file: a strict resume names the file; the default one warns
    and resumes from step2, again with the uninterrupted losses. Shards of another tokenizer are
    refused with both hashes named."""
    save_dir = str(tmp_path_factory.mktemp("ckpt"))
    with pytest.raises(AssertionError, match=r"exited with \[1, 9\]|rank 0"):
        run_ranks(2, crash_in_commit, str(demo_shards), save_dir)
    other = other_tokenizer_shards(tmp_path_factory, repo)
    result = run_ranks(2, resume_after_faults, str(demo_shards), save_dir, str(other))[0]
    straight = result["straight"]
    assert result["resumed"] == straight[2:]  # resumed at step 2, bit-exact
    assert result["complete"] == ["step6", "step4", "step2"]
    assert result["damaged"]["step6"] in result["errors"]["strict"]
    assert "truncated" in result["errors"]["strict"]
    assert "another tokenizer" in result["errors"]["other_tokenizer"]
    assert result["fallback"] == straight[2:]


def other_tokenizer_shards(tmp_path_factory, repo):
    """Shards of the demo corpus encoded with another (7000-piece) tokenizer."""
    import subprocess
    import sys
    out = tmp_path_factory.mktemp("other_data")
    common = ["--input", str(repo / "corpora" / "gothic_novels.txt"), "--doc-separator",
              "<|endoftext|>"]
    for args in (["train-tokenizer", "--output", str(out / "tok.model"), "--vocab-size", "7000"],
                 ["encode", "--tokenizer", str(out / "tok.model"), "--output", str(out / "shards")]):
        subprocess.run([sys.executable, "-m", "data_prep", args[0], *common, *args[1:]],
                       check=True, capture_output=True)
    return out / "shards"


def test_two_resumes_equal_nine_straight_steps_with_pipeline(demo_shards, tmp_path):
    """Encoder (BERT), encoder-decoder (T5) and decoder (GPT) at PP=2, ZeRO-1, dropout on: cut off
    after the step-3 and step-6 checkpoints and resumed, the 9 losses equal 9 straight steps; with
    train.keep_last_n=1 only step9 is left."""
    result = run_ranks(2, three_times_three, str(demo_shards), str(tmp_path))[0]
    for family, runs in result.items():
        assert [len(p) for p in runs["pieces"]] == [3, 3, 3], family
        assert sum(runs["pieces"], []) == runs["straight"], family
        assert runs["kept"] == ["step9"], runs["kept"]  # train.keep_last_n=1
