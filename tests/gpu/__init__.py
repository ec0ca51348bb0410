"""Checks that need a CUDA GPU (ExLlamaV2); run by scripts/gpu-check.sh, skipped everywhere else."""
