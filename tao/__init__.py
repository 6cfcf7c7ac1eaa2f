"""The task-side API of TAO, short enough to call inside a task::

    import tao

    @ray.remote                      # or a Dask task
    def generate(prompt):
        out = model(prompt)
        tao.count("tokens", len(out))   # units of useful work this task did
        return out

``count(unit, n)`` adds ``n`` (a finite number >= 0) units of ``unit`` to the current
task; reports then give joules and gCO2e per unit. ``task_scope(task_id)`` names the
current task where no engine adapter does (plain Python, tests). Everything here lives in
``tao_core.units``; this package only gives it a short name.
"""
from tao_core.units import UnitCountError, count, task_scope

__all__ = ["UnitCountError", "count", "task_scope"]
