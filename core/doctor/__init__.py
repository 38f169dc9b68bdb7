"""`gridwatch doctor`: settle on a real NVIDIA GPU what no fake can (NVML vs nvidia-smi, CUDA device
identity, workers on their GPUs, context cost, prefetch, mixed slots, OOM retries, packing, starvation
verdicts), and print one table. Importing it loads neither torch nor Qt."""

from gridwatch.doctor.runner import run_doctor

__all__ = ["run_doctor"]
