"""``plmscale import``: a local Hugging Face model folder -> a plmscale checkpoint at a chosen
TP x PP layout, to continue pretraining from (``train.init_from``).

    plmscale import --hf models/bert-base-uncased --config configs/bert_base.yaml \\
        --tp 2 --pp 2 --output runs/bert_cont/imported
    launch/train.py --config runs/bert_cont/imported/train.yaml   (then train as usual)

The model fields come from the folder's config.json (the rest of ``--config`` stays: data,
objective, schedule); the weights go through the export's name map run backwards. The output holds
``step0`` (weights and a fresh optimizer state at that layout; ``train.init_optimizer=true`` keeps
it, any other layout starts a fresh optimizer) and ``train.yaml``, the config to train with
(``train.init_from`` set). TP x PP local processes (gloo) write it; no network is used. A folder
holding a ``tokenizer.json`` needs ``data.path`` encoded with it (``python -m data_prep encode
--tokenizer FOLDER/tokenizer.json``): shards of another tokenizer are refused by name.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plmscale import", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf", required=True, help="Hugging Face model folder (config.json + weights)")
    parser.add_argument("--config", required=True,
                        help="training YAML of the same family (data, objective, schedule)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE", help="override a config field (repeatable)")
    parser.add_argument("--output", required=True, help="checkpoint directory to write")
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel size of the checkpoint")
    parser.add_argument("--pp", type=int, default=1, help="pipeline-parallel size of the checkpoint")
    return parser.parse_args(argv)


def _rank(rank: int, world: int, port: int, hf: str, output: str, base) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex).*")
    from plmscale.export.hf_import import import_checkpoint
    from plmscale.parallel import init_distributed, init_model_parallel
    init_distributed()
    init_model_parallel(base)
    import_checkpoint(hf, output, base)


def write_train_config(cfg, output: Path) -> Path:
    """``output/train.yaml``: the imported config with ``train.init_from`` = ``output``."""
    import yaml

    from plmscale.config import config_to_dict
    values = config_to_dict(cfg)
    values["model"]["preset"] = None
    values["train"]["init_from"] = str(output.resolve())
    path = output / "train.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def main(argv=None) -> int:
    warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex).*")
    args = parse_args(argv)
    import torch.multiprocessing as mp

    from plmscale.config import ConfigError, load_config, validate_config
    from plmscale.export.hf_import import imported_config
    from plmscale.export.inverse import HFImportError
    output = Path(args.output)
    try:
        base = load_config(args.config, args.overrides + [
            f"parallel.tensor_model_parallel_size={args.tp}",
            f"parallel.pipeline_model_parallel_size={args.pp}"])
        cfg = imported_config(args.hf, base)  # fail here, before starting ranks
        validate_config(cfg, args.tp * args.pp)
    except (ConfigError, HFImportError, ValueError, FileNotFoundError) as error:
        print(f"plmscale import: {error}", file=sys.stderr)
        return 2
    from plmscale.parallel.launch_env import free_port
    mp.start_processes(_rank, args=(args.tp * args.pp, free_port(), args.hf, str(output), base),
                       nprocs=args.tp * args.pp, start_method="spawn")
    path = write_train_config(cfg, output)
    print(f"plmscale import: wrote {output}/step0 (TP{args.tp} x PP{args.pp}) and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
