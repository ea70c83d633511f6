"""Tasks: how stored recordings become labelled windows. Importing this package registers every task module.

To add a task: write ``neurolm_data/tasks/<name>.py`` with a ``@register_task`` ``TaskSpec`` subclass (see
``tasks/base.py`` for the interface) and add its module name to ``_MODULES``.
"""

from importlib import import_module

from neurolm_data.tasks.base import (
    PATCH,
    SFREQ,
    Recording,
    TaskConfig,
    TaskError,
    TaskSpec,
    Window,
    available_tasks,
    get_task,
    register_task,
)

_MODULES: tuple[str, ...] = (
    "workload",
    "pretrain",
    "tuab",
    "tuev",
    "tusl",
    "seed",
    "hmc",
    "mi",
    "adhd",
)

for _m in _MODULES:
    try:
        import_module(f"neurolm_data.tasks.{_m}")
    except ModuleNotFoundError as e:  # a task module still being written must not break the others
        if e.name != f"neurolm_data.tasks.{_m}":
            raise

__all__ = [
    "PATCH",
    "SFREQ",
    "Recording",
    "TaskConfig",
    "TaskError",
    "TaskSpec",
    "Window",
    "available_tasks",
    "get_task",
    "register_task",
]
