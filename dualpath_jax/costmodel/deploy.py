"""How a system deploys the model: with tensor parallelism (dense models only) an engine is `tp`
GPUs that act as one larger GPU. The simulator then sees the deployed config."""

from __future__ import annotations

from dataclasses import replace

from ..config import ConfigError, ExperimentConfig, SystemSpec
from ..paths import repo_path
from .analytic import CostModel, Efficiency
from .profile_table import load_table
from .profiled import ProfiledCostModel


def engine_view(cfg: ExperimentConfig, system: SystemSpec) -> ExperimentConfig:
    """The config as `system` deploys it: with tensor parallelism (dense models only) an engine is
    `tp` GPUs that act as one larger GPU (rates, HBM and CNICs add up; weights are split)."""
    tp = system.tp_dense if cfg.model.routed_experts == 0 else 1
    if tp == 1:
        return cfg
    cl, gpu = cfg.cluster, cfg.hardware.gpu
    if cl.gpus_per_node % tp:
        raise ConfigError(
            f"system {system.name}: tp_dense={tp} does not divide cluster.gpus_per_node={cl.gpus_per_node}"
        )
    cluster = replace(
        cl,
        gpus_per_node=cl.gpus_per_node // tp,
        cnic_gbps=cl.cnic_gbps * tp,
        activation_reserve_gb=cl.activation_reserve_gb * tp,
    )
    big = replace(
        gpu,
        hbm_gb=gpu.hbm_gb * tp,
        hbm_tbps=gpu.hbm_tbps * tp,
        peak_tflops={k: v * tp for k, v in gpu.peak_tflops.items()},
    )
    return replace(
        cfg, cluster=cluster, hardware=replace(cfg.hardware, gpu=big), model=replace(cfg.model, dense_ffn_tp=1)
    )


def deployed(cfg: ExperimentConfig, system: SystemSpec, eff: Efficiency) -> tuple[ExperimentConfig, CostModel]:
    """The config as `system` deploys it, and its cost model."""
    view = engine_view(cfg, system)
    if cfg.costmodel.version == "profiled":
        table = load_table(repo_path(cfg.costmodel.table))
        return view, ProfiledCostModel(view.model, view.cluster, view.hardware, eff, cfg.costmodel, table=table)
    return view, CostModel(view.model, view.cluster, view.hardware, eff, cfg.costmodel)
