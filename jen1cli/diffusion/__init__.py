"""Diffusion: noise schedule, samplers, task masks, the multi-task objective, guided sampling."""
