"""Churn (DESIGN 5): a decision tree trained in the clear, and retention actions planned from it.

- :mod:`crm.churn.data`: the customer file (Telco layout), checked, and its features;
- :mod:`crm.churn.model`: training, the tree's JSON (``model.json``) and its integer encoding;
- :mod:`crm.churn.costs`: the cost file (hard and soft attributes, profit);
- :mod:`crm.churn.plan`: the plaintext action planning (leaf-node search), the private
  version's oracle;
- :mod:`crm.churn.private`, :mod:`crm.churn.protocol`, :mod:`crm.churn.service`,
  :mod:`crm.churn.score`: private scoring (protocol ``churn-score``) across the parties;
- :mod:`crm.churn.cli`: the ``mpc-crm churn`` subcommand.

See ``docs/churn.md``.
"""

from crm.churn.costs import Costs, LinearExpr, load_costs, parse_costs
from crm.churn.data import Customers, feature_names, feature_value, load_customers
from crm.churn.errors import CostError, DataError, ModelError
from crm.churn.model import (
    Encoding,
    Leaf,
    Split,
    TrainResult,
    TreeModel,
    encode_row,
    encode_value,
    threshold_int,
    train,
)
from crm.churn.plan import (
    Action,
    CustomerPlan,
    Selection,
    leaf_conditions,
    plan_all,
    plan_customer,
    select,
)

__all__ = [
    "Action",
    "CostError",
    "Costs",
    "CustomerPlan",
    "Customers",
    "DataError",
    "Encoding",
    "Leaf",
    "LinearExpr",
    "ModelError",
    "Selection",
    "Split",
    "TrainResult",
    "TreeModel",
    "encode_row",
    "encode_value",
    "feature_names",
    "feature_value",
    "leaf_conditions",
    "load_costs",
    "load_customers",
    "parse_costs",
    "plan_all",
    "plan_customer",
    "select",
    "threshold_int",
    "train",
]
