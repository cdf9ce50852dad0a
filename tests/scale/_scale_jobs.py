"""Shared pieces of the scale tests; also run as a script to be killed mid-job.

python _scale_jobs.py OUT KILL_AT    # os._exit(3) when example KILL_AT is read
python _scale_jobs.py OUT K ray      # on Ray: the driver os._exit(3)s once shard K is written
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn
from torch.utils.data import Dataset

N_FEATURES = 6
N_CLASSES = 3


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(N_FEATURES, 16), nn.Tanh(), nn.Linear(16, N_CLASSES)).eval()


class RowDataset(Dataset):
    """Example ``i`` built from ``i`` alone (so it needs no memory), labelled ``i % 3``.

    ``fail_at`` raises (a failing worker) and ``exit_at`` kills the process, when that
    example is read; ``on_read`` is called with each index (memory accounting).
    """

    def __init__(self, n: int, *, features: int = N_FEATURES) -> None:
        self.n, self.features = n, features
        self.fail_at: int | None = None
        self.exit_at: int | None = None
        self.on_read = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if self.on_read is not None:
            self.on_read(i)
        if i == self.fail_at:
            raise RuntimeError(f"worker failure at example {i}")
        if i == self.exit_at:
            os._exit(3)  # a killed process: no cleanup, no finally blocks
        g = torch.Generator().manual_seed(i)
        return torch.randn(self.features, generator=g), i % N_CLASSES


def run(out: str, dataset: Dataset, **options):
    from whybox.scale import attribute_dataset

    options = {"shard_rows": 8, "show_progress": False, "n_steps": 6, **options}
    return attribute_dataset(dataset, "integrated_gradients", make_model(), out=out, **options)


def _exit_after_shard(last: int) -> None:
    """Kill this (driver) process, with no clean-up, right after shard ``last`` is written."""
    from whybox.scale import shards

    write = shards.write_shard

    def write_then_maybe_exit(out, index, *args, **kwargs):
        write(out, index, *args, **kwargs)
        if index == last:
            os._exit(3)

    shards.write_shard = write_then_maybe_exit


if __name__ == "__main__":
    torch.set_num_threads(1)
    data = RowDataset(60)
    if len(sys.argv) > 3 and sys.argv[3] == "ray":
        # the dataset and model are __main__'s here: Ray pickles them by value
        _exit_after_shard(int(sys.argv[2]))
        run(sys.argv[1], data, backend="ray", num_workers=2, num_cpus=0.5)
    else:
        data.exit_at = int(sys.argv[2])
        run(sys.argv[1], data)
