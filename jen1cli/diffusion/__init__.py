"""Diffusion: noise schedule, task masks, the multi-task objective and guided sampling."""
