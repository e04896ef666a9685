"""Hydra entry points (offline, online), the figure scripts and the results command."""

import os
import warnings

from omegaconf import OmegaConf

# configs/*.yaml name Hydra's output folders with ${pid:}, so two runs started in the same second
# never share a folder, and put a sweep's folder under ${launch_dir:}, the folder the sweep was
# started from, so that a Ray or SLURM worker that starts elsewhere still writes its job folder
# there (Hydra's own ${hydra:runtime.cwd} is not set yet when it resolves the sweep folder).
if not OmegaConf.has_resolver("pid"):
    OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True)  # one value per run
if not OmegaConf.has_resolver("launch_dir"):
    OmegaConf.register_new_resolver("launch_dir", os.getcwd, use_cache=True)

# configs/hydra/launcher/ray.yaml replaces hydra-ray-launcher's own `ray` config on purpose (it
# joins a running cluster); Hydra checks it against that config's schema, which it passes, and
# warns about the name on every run.
warnings.filterwarnings("ignore", message="\\s*'hydra/launcher/ray' is validated against ConfigStore schema")
