"""Process groups, the DeepSpeed mpu adapter, layout-independent initialisation, TP-aware RNG."""

from plmscale.parallel.initialization import initialize_parameters
from plmscale.parallel.random import seed_all, tensor_parallel_rng
from plmscale.parallel.state import (DeepSpeedMpu, device, init_distributed, init_model_parallel,
                                     layout_summary)

__all__ = ["DeepSpeedMpu", "device", "init_distributed", "init_model_parallel",
           "initialize_parameters", "layout_summary", "seed_all", "tensor_parallel_rng"]
