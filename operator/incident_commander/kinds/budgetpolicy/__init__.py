"""BudgetPolicy: a FinOps cap. ``controller`` evaluates and enforces; ``handlers`` subscribes it."""
