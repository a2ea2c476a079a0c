"""plmscale: pretraining of BERT/RoBERTa/ALBERT/ELECTRA/T5/BART/GPT-style models on megatron-core
tensor parallelism and DeepSpeed ZeRO. ``pip install -e .``; with CUDA present the fused kernels in
csrc/ are compiled ahead of time, otherwise they build at first use on a GPU (or the torch reference
path runs on CPU)."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _cuda_build() -> dict:
    """Ahead-of-time build of the fused kernels when a CUDA toolkit and CUDA torch are present."""
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension
    except ImportError:
        return {}
    if not (torch.cuda.is_available() and CUDA_HOME):
        return {}
    import sys
    sys.path.insert(0, str(ROOT))
    from plmscale.kernels.build import cuda_extension
    extension = cuda_extension()
    if extension is None:
        return {}
    return {"ext_modules": [extension], "cmdclass": {"build_ext": BuildExtension}}


setup(
    name="plmscale",
    version="0.1.0",
    description="Distributed pretraining of language-model families on megatron-core + DeepSpeed",
    python_requires=">=3.11",
    packages=find_packages(include=["plmscale", "plmscale.*", "data_prep", "data_prep.*"]),
    install_requires=_requirements(),
    entry_points={"console_scripts": ["plmscale-data=data_prep.cli:main",
                                      "plmscale=plmscale.cli:main",
                                      "plmscale-plan=plmscale.perf.cli:main"]},
    **_cuda_build(),
)
