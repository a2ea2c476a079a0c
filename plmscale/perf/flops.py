"""Model FLOPs of a training step, for every family, from the configuration alone.

Matmul FLOPs, 2 per multiply-add. A trained matmul costs its forward once and twice more in the
backward pass (input and weight gradients: 3x in all); a frozen network (DistilBERT's teacher) only
runs forward (1x). Full activation recomputation repeats the trained layers' forward (4x), which is
hardware work but not model work: MFU uses the model FLOPs, as Megatron and the PTD-P paper do.

For a GPT this is exactly the PTD-P paper's (Narayanan et al. 2021, eq. 3) count,
72·B·s·L·h²·(1 + s/6h + V/12Lh), or 96·B·s·L·h²·(1 + s/6h + V/16Lh) with recomputation.
"""

from __future__ import annotations

from dataclasses import dataclass

from plmscale.config.schema import ExperimentConfig
from plmscale.perf.shape import describe


@dataclass(frozen=True)
class StepFlops:
    per_sequence: float
    """Model FLOPs of one sequence's forward + backward."""
    hardware_per_sequence: float
    """Including the recomputed forward when activations are recomputed."""
    sequences_per_step: int
    seq_length: int

    @property
    def per_step(self) -> float:
        return self.per_sequence * self.sequences_per_step

    @property
    def per_token(self) -> float:
        """Per input token (encoder-decoders: per encoder token, the decoder's work included)."""
        return self.per_sequence / self.seq_length


def forward_flops(cfg: ExperimentConfig) -> tuple[float, float]:
    """(forward FLOPs of the trained parts, forward FLOPs of frozen parts) for one sequence."""
    shape = describe(cfg)
    trained = frozen = 0.0
    for part in [*shape.stacks, *shape.matmuls]:
        if part.trained:
            trained += part.forward_flops()
        else:
            frozen += part.forward_flops()
    return trained, frozen


def step_flops(cfg: ExperimentConfig, data_parallel_size: int = 1,
               recompute: bool = False) -> StepFlops:
    """FLOPs of one optimiser step: micro_batch x accumulation x DP sequences."""
    trained, frozen = forward_flops(cfg)
    model = 3 * trained + frozen
    hardware = model
    if recompute:
        hardware += sum(s.forward_flops() for s in describe(cfg).stacks if s.trained)
    t = cfg.train
    return StepFlops(model, hardware,
                     t.micro_batch_size * t.gradient_accumulation_steps * data_parallel_size,
                     cfg.data.seq_length)


def ptdp_flops(batch: int, seq: int, layers: int, hidden: int, vocab: int,
               recompute: bool = False) -> float:
    """Narayanan et al. 2021 eq. 3: FLOPs of one GPT iteration of ``batch`` sequences (FFN 4h)."""
    if recompute:
        return 96 * batch * seq * layers * hidden**2 * (1 + seq / (6 * hidden)
                                                        + vocab / (16 * layers * hidden))
    return 72 * batch * seq * layers * hidden**2 * (1 + seq / (6 * hidden)
                                                    + vocab / (12 * layers * hidden))


def ptdp_parameters(layers: int, hidden: int, vocab: int, seq: int) -> float:
    """Narayanan et al. 2021 eq. 2: parameters of a GPT, 12·l·h²·(1 + 13/12h + (V + s)/12lh)."""
    return 12 * layers * hidden**2 * (1 + 13 / (12 * hidden) + (vocab + seq) / (12 * layers * hidden))


def mfu(flops_per_step: float, step_seconds: float, devices: int, peak_flops: float) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s per device over the device's peak."""
    return flops_per_step / (step_seconds * devices * peak_flops)


def tflops_per_device(flops_per_step: float, step_seconds: float, devices: int) -> float:
    return flops_per_step / (step_seconds * devices) / 1e12
