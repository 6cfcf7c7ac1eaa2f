"""TAO for Dask: energy-aware placement, deferral, scaling and per-task energy.

One line on a running cluster::

    import tao_dask
    tao_dask.register(client)   # each worker describes its hardware; or declare types:
    tao_dask.register(client, workers={"0": "IbmX3250XeonX3470", "1": "HpProLiantMl110G3PentiumD930"})

or, for a scheduler started from the command line, ``dask scheduler --preload tao_dask``
(settings from the JSON file named by ``TAO_DASK_CONFIG``; see :func:`dask_setup`).
"""
from __future__ import annotations

from tao_core.lazy import lazy_exports

#: public name -> the module that holds it. The package loads a module on first use: a worker
#: unpickling TAOWorkerPlugin imports the package, and should not pay for the scheduler's side
#: (the controller, pandas, the report builder) on its event loop.
_EXPORTS = {
    "register": "tao_dask.api", "plugins": "tao_dask.api", "stats": "tao_dask.api", "dask_setup": "tao_dask.api",
    "ObserveOnlyWarning": "tao_dask.api", "report": "tao_dask.reporting", "EnergyAdaptive": "tao_dask.adaptive",
    "TAOSchedulerPlugin": "tao_dask.scheduler_plugin", "TAOWorkerPlugin": "tao_dask.worker_plugin",
    "NodeAssignment": "tao_core.live.assignment", "HOLD_ADDRESS": "tao_dask.placement",
    "EnergyBudgetExceeded": "tao_dask.placement",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
