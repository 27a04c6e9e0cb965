"""Every knob of the grader in one place: the defaults live here and nowhere else.

`Settings` travels from the command line to the grading workers and into the course folder's
`nbgrader_config.py`, so `grade`, `check` and nbgrader's own commands run in the course folder grade
with the same limits.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limits:
    """What one sandboxed kernel may use."""

    memory_bytes: int = 8 * 2**30      # address space: torch alone maps about 1.5 GiB
    processes: int = 64
    file_bytes: int = 64 * 2**20
    tmp_bytes: int = 64 * 2**20
    workdir_bytes: int = 64 * 2**20        # the kernel's working directory: a tmpfs of this size
    cgroup_memory_bytes: int = 6 * 2**30   # resident memory of all the kernel's processes, memfd and tmpfs included
    cpu_shares: int = 1024                 # all the kernel's processes together weigh as one process of the grader
    max_message_bytes: int = 64 * 2**20    # a larger message from the kernel is dropped before it is parsed


@dataclass(frozen=True)
class Settings:
    course_id: str = "attention"
    cell_timeout: int = 60             # seconds a cell, or one test cell's checks, may run
    notebook_timeout: int = 900        # seconds the whole notebook may run
    kernel_start_timeout: int = 120    # seconds a kernel may take to start and import torch
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    sandboxed: bool | None = None      # None: wherever the sandbox is available
    kernel_start: str = "fork"         # "fork": kernels forked from a warm template (Linux); "fresh": a new
                                       # interpreter each ($ATTENTION_KERNEL_START overrides it)
    max_notebook_bytes: int = 32 * 2**20        # a submission larger than this is not read
    max_notebook_containers: int = 2_000_000    # JSON lists and objects in one submission, counted before parsing
    worker_memory_bytes: int = 12 * 2**30       # address space of one grading worker: a submission that
                                                # makes the grader allocate more loses its own row only
    limits: Limits = field(default_factory=Limits)

    def replace(self, **changes) -> "Settings":
        """A copy with `changes`; None values keep the default (so CLI options left out change nothing)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Settings":
        data = dict(data)
        if isinstance(data.get("limits"), dict):
            data["limits"] = Limits(**data["limits"])
        return cls(**data)


DEFAULT = Settings()
