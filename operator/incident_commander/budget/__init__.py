"""BudgetPolicy engine: spend from Cost Explorer and a usage ledger, phases, actions, enforcement.

Pure pieces: ``model`` (types), ``math`` (periods, pricing, phases, projection),
``enforcement`` (what a budget state means for routing). I/O: ``costexplorer``
and ``ledger`` (blocking boto3 calls, run in threads) and ``registry`` (one
worker per BudgetPolicy, and the interface the HTTP API uses).
"""
