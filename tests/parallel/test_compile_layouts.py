"""``train.compile`` through the real training loop and DeepSpeed's pipeline engine: with every
transformer layer compiled, PP=2 reports at every step what the eager single rank reports (loss,
accuracies, learning rate, gradient norm; fp32, the suite's tolerance), so the layers are found and
compiled inside pipeline stages too. BERT's tiny demo config (4 layers), 2 steps of 2 micro-batches. (TP is
refused with compile: tests/unit/test_compile.py.)"""

import pytest
from closeness import assert_close
from compile_workers import train_layouts
from harness import run_ranks

pytestmark = pytest.mark.slow

MEASURED = ("tokens_per_s", "tflops_per_device", "mfu", "memory_gib_per_rank")
# 4 layers: each stage holds a layer that runs compiled (BERT's last one, which computes only the
# positions its losses read, runs eager: plmscale.training.compile)
LAYERS = ["model.num_layers=4"]
COMPILED = {"PP=2": LAYERS + ["parallel.pipeline_model_parallel_size=2", "train.compile=true"]}


def test_compiled_layouts_report_what_the_eager_single_rank_reports(demo_shards):
    want, graphs = run_ranks(1, train_layouts, str(demo_shards), "bert_demo.yaml", {"eager": LAYERS})[0]["eager"]
    assert graphs == 0
    for rank in run_ranks(2, train_layouts, str(demo_shards), "bert_demo.yaml", COMPILED):
        for layout, (history, graphs) in rank.items():
            assert graphs > 0, layout  # every stage holds layers, and they ran compiled
            assert len(history) == len(want) == 2
            for step, (got, ref) in enumerate(zip(history, want), 1):
                reported = sorted(k for k in ref if k not in MEASURED)
                assert reported == sorted(k for k in got if k not in MEASURED), (layout, step)
                assert_close({k: got[k] for k in reported}, {k: ref[k] for k in reported},
                             f"{layout}, step {step}")
