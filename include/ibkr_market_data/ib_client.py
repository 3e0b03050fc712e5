"""The one module that imports the IB client library: ``ib_async`` (same API) can replace it here.

Importing it costs ~0.3-0.9 s: import it inside functions on the task path, never at DAG-parse time.
See docs/architecture.md.
"""

import logging

from ib_insync import IB, BarData, Contract, ContractDetails, RequestError, util

__all__ = ["IB", "BarData", "Contract", "ContractDetails", "RequestError", "util"]

# The client logs every connect step at INFO; keep its warnings and errors unless logging says otherwise.
_client_log = logging.getLogger("ib_insync")
if _client_log.level == logging.NOTSET:
    _client_log.setLevel(logging.WARNING)
