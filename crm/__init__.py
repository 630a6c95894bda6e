"""The CRM layer: churn model, private scoring, action planning (DESIGN 5)."""
