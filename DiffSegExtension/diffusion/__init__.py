"""Gaussian diffusion on the mask channel: schedule, training loss, samplers, sampling loop."""
