"""Energy accounting shared by the simulator, the adapters and the reports: the figures of a
run, each defined once (``figures``), and the one shape of the ledger records that carry
them (``records``)."""
from tao_core.accounting.figures import (
    INVERSION_THRESHOLD, EnergyParts, RunFigures, is_inverted, overhead_share,
)
from tao_core.accounting.records import (
    RECORD_FORMAT, NodeInfo, NodeRecord, RunConfig, RunRecords, RunSummary, WorkRecord, run_records,
)

__all__ = [
    "INVERSION_THRESHOLD", "EnergyParts", "RunFigures", "is_inverted", "overhead_share",
    "RECORD_FORMAT", "NodeInfo", "NodeRecord", "RunConfig", "RunRecords", "RunSummary", "WorkRecord",
    "run_records",
]
