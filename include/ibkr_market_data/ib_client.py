"""The one module that imports the IB client library.

Everything else imports these names from here, so the maintained fork ``ib_async`` (same API) can
replace ``ib_insync`` by changing the import below. Importing this module costs ~0.3-0.9 s, so
import it inside functions on the task path, never at DAG-parse time.
"""

import logging

from ib_insync import IB, BarData, Contract, ContractDetails, RequestError, util

__all__ = ["IB", "BarData", "Contract", "ContractDetails", "RequestError", "util"]

# The client logs each step of every connect at INFO (eight lines per task); the hook logs the
# decisions that matter. Keep the client's warnings and errors unless logging was configured for it.
_client_log = logging.getLogger("ib_insync")
if _client_log.level == logging.NOTSET:
    _client_log.setLevel(logging.WARNING)
