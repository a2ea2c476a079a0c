#!/usr/bin/env bash
# The main job on the embedded default: tokenizer + Arrow shards from the bundled novels, then a BERT
# pretraining run under the DeepSpeed launcher on 2 CPU ranks (tensor parallel 2, ZeRO-1).
# Extra arguments go to launch/train.py, e.g.  bash launch/demo.sh --set train.train_steps=50
# It evaluates on one novel held out of the three every 100 steps and ends with `plmscale report`.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/setup_env.sh requirements.txt

RUN=runs/demo
CORPUS=corpora/gothic_novels.txt
mkdir -p "$RUN"
if [ ! -f "$RUN/tokenizer.model" ]; then
  echo "== 1/4 training the sentencepiece tokenizer on $CORPUS"
  python -m data_prep train-tokenizer --input "$CORPUS" --doc-separator '<|endoftext|>' \
    --output "$RUN/tokenizer.model" --vocab-size 8000 --model-type unigram
fi
echo "== 2/4 encoding $CORPUS into Arrow shards (resumes/skips what is complete)"
python -m data_prep encode --input "$CORPUS" --doc-separator '<|endoftext|>' \
  --tokenizer "$RUN/tokenizer.model" --output "$RUN/shards" --workers 2 > "$RUN/encode.log"
echo "   $(grep -m1 '"num_tokens"' "$RUN/shards/manifest.json" | tr -d ' ,')"

echo "== 3/4 pretraining: deepspeed launcher, 2 CPU ranks, TP=2, ZeRO-1 (configs/bert_demo.yaml)"
# Two ranks share two cores: one math thread each avoids oversubscription.
export OMP_NUM_THREADS=1
deepspeed --num_gpus 2 launch/train.py --config configs/bert_demo.yaml \
  --set data.valid_fraction=0.05 --set train.eval_interval=100 --set train.eval_iters=4 "$@"

echo "== 4/4 run report (plots of loss, valid loss, LR, grad norm, tokens/s from TensorBoard)"
python -m plmscale.cli report "$RUN"
