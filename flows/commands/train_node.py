"""`nerflow train-node`: this machine joins the data-parallel training of a pipeline run started on node 0.

With `train.nodes: N`, `nerflow run CONFIG` on node 0 starts torchrun there (node rank 0) and waits for the others;
each other machine runs `nerflow train-node CONFIG [key=value ...] --node-rank K` with the same config, overrides
and shared cache location. It plans the run as node 0 does (same data, model, config and code give the same train
key), waits for node 0's job file in the shared cache, and starts its own torchrun processes (docs/distributed.md).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from nerflow.config import ConfigError

log = logging.getLogger("nerflow.cli")


def cmd_train_node(args: argparse.Namespace) -> int:
    from nerflow import launch
    from nerflow.config import load_config
    from nerflow.plan import make_plan
    from nerflow.prefect_tasks.train import work_dir

    cfg = load_config(args.config, args.overrides)
    if cfg.train.nodes < 2:
        raise ConfigError("train.nodes is 1: there is no other node to join (set train.nodes and "
                          "train.master_addr in the config node 0 runs)")
    if not 1 <= args.node_rank < cfg.train.nodes:
        raise ConfigError(f"--node-rank {args.node_rank}: must be 1 to {cfg.train.nodes - 1} (node 0 is the one "
                          "that runs `nerflow run`)")
    plan = make_plan(cfg)
    job_path = work_dir(plan, cfg) / launch.JOB_FILE
    print(f"node {args.node_rank}: waiting for node 0 to start training ({job_path})", flush=True)
    deadline = time.monotonic() + args.wait
    while not job_path.is_file():
        if time.monotonic() > deadline:
            raise ConfigError(f"{job_path}: node 0 did not start this run's training within {args.wait} s; is "
                              "cache_dir the same shared folder on every node, and is `nerflow run` running there?")
        time.sleep(1)
    result = launch.torchrun(json.loads(job_path.read_text()), node_rank=args.node_rank)
    summary = {"node_rank": args.node_rank, "steps": result.get("steps"), "world_size": result.get("world_size")}
    print(json.dumps(summary) if args.json else
          f"node {args.node_rank}: training finished ({summary['steps']} steps, {summary['world_size']} processes); "
          "node 0 evaluates and registers the model")
    return 0


def add_parsers(sub) -> None:
    node = sub.add_parser("train-node", help="join a multi-machine training run as node K (docs/distributed.md)")
    node.add_argument("config", type=Path)
    node.add_argument("overrides", nargs="*", help="key=value: the same overrides node 0 was given")
    node.add_argument("--node-rank", type=int, required=True, help="this machine's rank, 1 to train.nodes - 1")
    node.add_argument("--wait", type=float, default=3600, help="seconds to wait for node 0 (default 3600)")
    node.add_argument("--json", action="store_true", help="one JSON line at the end, for scripts")
    node.set_defaults(func=cmd_train_node)
