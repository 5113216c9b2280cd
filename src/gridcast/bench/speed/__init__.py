"""`gridcast bench speed`: speed benchmarks, every figure beside a baseline measured in the same run.

One module per group (`train`, `stream`, `rollout`, `grid`, `memory`), each with ``run(**sizes)``
returning its lines and a ``main()`` for ``python -m gridcast.bench.speed.<group>``; `kit` holds the
timing helpers and the stand-in model they share; `runner` runs groups for the CLI. The scripts in
the repository's ``benchmarks/`` folder are thin wrappers over these modules.

This ``__init__`` imports nothing, so that naming a group stays cheap; the modules import torch.
"""

__all__: list[str] = []
