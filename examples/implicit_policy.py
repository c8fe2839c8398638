"""Implicit behavioural cloning on the particle task: an energy policy against an MSE policy.

An ImplicitRegressor (observation -> target position) and a least-squares MLP of the same
widths learn from the same oracle demonstrations with the same number of steps, and are
scored over the same episodes at the SAME goal tolerance (IBC's published 0.96 vs 0.05 used a
different tolerance for each: google-research/ibc#5).

    python examples/implicit_policy.py              # ~10-20 min on one CPU thread
    python examples/implicit_policy.py --quick      # seconds (the smoke test)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import ebmlab as eb
from ebmlab.demo.implicit import (
    POLICY_DEMOS,
    POLICY_OPTIONS,
    POLICY_STEPS,
    GaussianRegressor,
    as_policies,
    demonstrations,
    policy_inputs,
    success_rate,
)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", type=int, default=POLICY_DEMOS,
                        help="oracle episodes to learn from")
    parser.add_argument("--steps", type=int, default=POLICY_STEPS,
                        help="training steps of each policy")
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes")
    parser.add_argument("--tolerance", type=float, default=0.05, help="goal radius, both")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for the figure")
    parser.add_argument("--raw-observation", action="store_true",
                        help="both policies see the 8 raw numbers, not goal_features")
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.demos, args.steps, args.episodes, args.hidden = 10, 30, 4, [16]
    torch.set_num_threads(1)
    # Both policies see the same inputs: goal_features(observation) unless --raw-observation.
    feats = policy_inputs(args.raw_observation)
    obs, act = demonstrations(args.demos, seed=args.seed)
    obs = feats(obs)
    hidden = tuple(args.hidden)

    start = time.perf_counter()
    implicit = eb.ImplicitRegressor(hidden_layer_sizes=hidden, max_iter=args.steps,
                                    random_state=args.seed, **POLICY_OPTIONS)
    implicit.fit(obs.numpy(), act.numpy())
    fit_implicit = time.perf_counter() - start
    start = time.perf_counter()
    mse = GaussianRegressor(hidden, num_steps=args.steps, seed=args.seed).fit(obs, act)
    fit_mse = time.perf_counter() - start

    implicit_policy, mse_policy = as_policies(implicit, mse, feats)
    start = time.perf_counter()
    rate_i, roll_i = success_rate(implicit_policy, args.episodes, tolerance=args.tolerance,
                                  seed=args.seed + 1)
    eval_implicit = time.perf_counter() - start
    rate_m, roll_m = success_rate(mse_policy, args.episodes, tolerance=args.tolerance,
                                  seed=args.seed + 1)
    result = {"demos": args.demos, "pairs": len(obs), "steps": args.steps,
              "episodes": args.episodes, "tolerance": args.tolerance, "hidden": list(hidden),
              "inputs": "raw observation" if args.raw_observation else "goal_features",
              "implicit_success": rate_i, "mse_success": rate_m,
              "fit_seconds": {"implicit": fit_implicit, "mse": fit_mse},
              "eval_seconds_implicit": eval_implicit}
    print(f"success over {args.episodes} episodes at tolerance {args.tolerance}: "
          f"implicit {rate_i:.2f}, MSE {rate_m:.2f} ({args.demos} demos, {args.steps} steps)")
    if args.out is not None:
        fig, axes = eb.plot.subplots(2, title=f"Particle task, tolerance {args.tolerance}")
        eb.plot.particle_trajectories(roll_i, tolerance=args.tolerance, ax=axes[0],
                                      title=f"implicit: {rate_i:.0%}")
        eb.plot.particle_trajectories(roll_m, tolerance=args.tolerance, ax=axes[1],
                                      title=f"MSE: {rate_m:.0%}")
        eb.plot.save(fig, args.out / "implicit_policy.png")
        (args.out / "implicit_policy.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
