"""Samplers of the original research code that no diffusers scheduler reproduces, behind ``models.sampler.Sampler``.

- ``plms``: LDM's pseudo-linear multistep sampler (Paint-by-Example, DCI-VTON, StableVITON release scripts).
- ``custom_ddim``: the custom try-on model's own DDIM (its timestep list, predicted-x0 return, per-step paste).

Each loop calls the adapter's ``denoise`` once per sampling step, so an ``AttributionCapture`` counts one UNet call
per step; a call that is not a step of its own (PLMS's corrector evaluation) runs under ``unrecorded_call``.
"""
