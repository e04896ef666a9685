"""Hydra entry points (offline, online), the figure scripts and the results command."""

import os

from omegaconf import OmegaConf

# configs/*.yaml name Hydra's output folders with ${pid:}, so two runs started in the same second
# never share a folder.
if not OmegaConf.has_resolver("pid"):
    OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True)  # one value per run
