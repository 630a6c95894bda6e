"""Tests of the plaintext churn module: data, the tree and its JSON and integer encoding,
the cost file, action planning (the private version's oracle) and ``mpc-crm churn``."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crm.churn.costs import load_costs, parse_costs, parse_profit
from crm.churn.data import (
    Customers,
    feature_names,
    feature_value,
    load_customers,
    numeric_value,
)
from crm.churn.errors import CostError, DataError, ModelError
from crm.churn.model import (
    Encoding,
    Leaf,
    TreeModel,
    encode_row,
    encode_value,
    threshold_int,
    train,
)
from crm.churn.plan import (
    Action,
    CustomerPlan,
    leaf_conditions,
    plan_all,
    plan_customer,
    reach,
    select,
)
from mpc import cli as mpc_cli

HERE = Path(__file__).resolve().parents[1]
"""The tests/ directory (its data/ folder)."""
ROOT = HERE.parent
SMALL = HERE / "data" / "churn_small.csv"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
TELCO = SHARED / "telco-churn.csv"
EXAMPLE_COSTS = ROOT / "examples" / "telco-costs.toml"

needs_telco = pytest.mark.skipif(not TELCO.exists(), reason="../shared/data not present")

HEADER = (
    "customerID,gender,SeniorCitizen,Partner,Dependents,tenure,PhoneService,MultipleLines,"
    "InternetService,OnlineSecurity,OnlineBackup,DeviceProtection,TechSupport,StreamingTV,"
    "StreamingMovies,Contract,PaperlessBilling,PaymentMethod,MonthlyCharges,TotalCharges,Churn"
)
ROW = (
    "A-1,Female,0,Yes,No,1,No,No phone service,DSL,No,Yes,No,No,No,No,Month-to-month,Yes,"
    "Electronic check,29.85,29.85,No"
)


@pytest.fixture(scope="module")
def telco() -> Customers:
    if not TELCO.exists():
        pytest.skip("../shared/data not present")
    return load_customers(TELCO, require_label=True)


@pytest.fixture(scope="module")
def trained(telco: Customers) -> Any:
    return train(telco)


@pytest.fixture(scope="module")
def model_file(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("churn") / "model.json"
    trained.model.save(path)
    return path


# -- data --------------------------------------------------------------------------


def test_small_file_loads() -> None:
    c = load_customers(SMALL, require_label=True)
    assert len(c) == 48 and c.ids[0] == "S000-TEST" and c.columns == HEADER.split(",")
    assert c.labels is not None and sum(c.labels) == 12
    last = c.rows[-1]
    assert last["TotalCharges"] == "" and numeric_value(last, "TotalCharges") == 0
    names = feature_names(c)
    assert names[:3] == ["gender=Female", "gender=Male", "SeniorCitizen"]
    assert "Contract=Month-to-month" in names and "Churn=No" not in names
    assert names.index("tenure") < names.index("PhoneService=No")
    assert feature_value(c.rows[0], "Contract=One year") == 1.0
    assert feature_value(c.rows[0], "Contract=Two year") == 0.0
    assert feature_value(c.rows[0], "MonthlyCharges") == 102.7


@needs_telco
def test_telco_loads(telco: Customers) -> None:
    assert len(telco) == 7043 and telco.labels is not None and sum(telco.labels) == 1869
    assert sum(row["TotalCharges"] == "" for row in telco.rows) == 11
    assert len(feature_names(telco)) == 45


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "customers.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        (HEADER + "\n", "no customers"),
        (
            HEADER.replace("tenure,", "").replace(",Contract", "") + "\n",
            "missing column(s) tenure, Contract",
        ),
        (HEADER + "\n" + ROW + ",extra\n", "line 2: 22 fields, the header has 21"),
        (
            HEADER + "\n" + ROW + "\n" + ROW + "\n",
            "line 3, column customerID: customer 'A-1' appears twice (lines 2 and 3)",
        ),
        (
            HEADER + "\n" + ROW.replace(",29.85,29.85,", ",abc,29.85,") + "\n",
            "line 2, column MonthlyCharges: 'abc' is not a number",
        ),
        (
            HEADER + "\n" + ROW.replace(",1,No,No phone", ",-1,No,No phone") + "\n",
            "line 2, column tenure: '-1' is negative",
        ),
        (
            HEADER + "\n" + ROW.replace(",29.85,29.85,", ",,29.85,") + "\n",
            "column MonthlyCharges: '' is not a number",
        ),
        (
            HEADER + "\n" + ROW.replace(",No\n", ",Maybe\n").removesuffix("No") + "Maybe\n",
            "line 2, column Churn: 'Maybe' is not Yes or No",
        ),
        (HEADER + "\n" + ROW.replace("DSL", "") + "\n", "line 2, column InternetService: empty"),
        (HEADER + ",tenure\n", "column tenure: column named twice"),
    ],
)
def test_bad_data_is_refused(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_customers(path, require_label=True)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_label_required_only_for_training(tmp_path: Path) -> None:
    header = HEADER.removesuffix(",Churn")
    path = _write(tmp_path, header + "\n" + ROW.removesuffix(",No") + "\n")
    assert load_customers(path).labels is None
    with pytest.raises(DataError, match="missing column"):
        load_customers(path, require_label=True)
    with pytest.raises(DataError, match="no label column"):
        train(load_customers(path))


# -- the tree ----------------------------------------------------------------------


@needs_telco
def test_training_reaches_the_reference(trained: Any) -> None:
    m = trained.model.metrics
    assert trained.params == {"max_depth": 6, "min_samples_leaf": 50}
    assert m["test_auc"] >= 0.84
    assert abs(m["test_accuracy"] - 0.793) < 0.005
    assert m["n_train"] == 5282 and m["n_test"] == 1761
    assert trained.model.depth == 6 and m["leaves"] == len(trained.model.leaves())


@needs_telco
def test_model_json_alone_scores_like_sklearn(
    trained: Any, model_file: Path, telco: Customers
) -> None:
    model = TreeModel.load(model_file)
    tree = trained.estimator.tree_
    # Counts from scikit-learn's own fractions, made integers.
    churn = np.rint(tree.value[:, 0, 1] * tree.n_node_samples).astype(int)
    n = tree.n_node_samples
    sk_leaf = trained.estimator.apply(trained.X)
    for k, row in enumerate(telco.rows):
        leaf = model.leaf_of(row)
        assert leaf == sk_leaf[k]
        assert model.p_loyal(leaf) == (n[leaf] - churn[leaf] + 1) / (n[leaf] + 2)
    for leaf in model.leaves():
        node = model.nodes[leaf]
        assert isinstance(node, Leaf) and (node.loyal, node.churn) == (
            n[leaf] - churn[leaf],
            churn[leaf],
        )


@needs_telco
def test_encoded_walk_agrees_on_every_row(model_file: Path, telco: Customers) -> None:
    model = TreeModel.load(model_file)
    assert model.encoding == {
        "SeniorCitizen": Encoding(1, 2),
        "tenure": Encoding(1, 8),
        "MonthlyCharges": Encoding(100, 15),
        "TotalCharges": Encoding(100, 21),
    }
    for row in telco.rows:
        assert model.leaf_of_encoded(encode_row(model, row)) == model.leaf_of(row)


@needs_telco
def test_threshold_int_is_exact_around_every_threshold(model_file: Path) -> None:
    model = TreeModel.load(model_file)
    for node in model.internal_nodes():
        split = model.split(node)
        scale = model.encoding_of(split.feature).scale
        t = threshold_int(model, node)
        exact = Fraction(Decimal(repr(split.threshold)))
        for x in range(t - 3, t + 4):
            assert (Fraction(x, scale) <= exact) == (x <= t)


@needs_telco
def test_structure_helpers(model_file: Path) -> None:
    model = TreeModel.load(model_file)
    assert sorted(model.leaves() + model.internal_nodes()) == list(range(len(model.nodes)))
    assert max(len(model.path(leaf)) for leaf in model.leaves()) == model.depth
    for leaf in model.leaves():
        i = model.root
        for node, right in model.path(leaf):
            assert node == i
            split = model.split(node)
            i = split.right if right else split.left
        assert i == leaf


def test_encode_value() -> None:
    model = TreeModel(
        features=("MonthlyCharges", "Contract=One year"),
        encoding={"MonthlyCharges": Encoding(100, 15)},
        nodes=(Leaf(1, 1),),
    )
    assert int(1.15 * 100) == 114  # why the encoding never multiplies floats
    assert encode_value(model, "MonthlyCharges", 1.15) == 115
    assert encode_value(model, "MonthlyCharges", "29.85") == 2985
    assert encode_value(model, "MonthlyCharges", 29.85) == 2985
    assert encode_value(model, "MonthlyCharges", "327.66") == 2**15 - 2
    assert encode_value(model, "Contract=One year", "One year") == 1
    assert encode_value(model, "Contract=One year", "Two year") == 0
    assert encode_value(model, "Contract=One year", 1.0) == 1
    with pytest.raises(DataError, match="one-hot feature is 0 or 1"):
        encode_value(model, "Contract=One year", 2)
    with pytest.raises(DataError, match="negative"):
        encode_value(model, "MonthlyCharges", -1.0)
    with pytest.raises(DataError, match="above the model's limit"):
        encode_value(model, "MonthlyCharges", "327.67")


def _tree_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": "mpc-crm/churn-tree",
        "version": 1,
        "target": "loyal",
        "features": ["tenure", "Contract=Month-to-month"],
        "encoding": {"tenure": {"scale": 1, "bits": 8}},
        "root": 0,
        "nodes": [
            {"feature": "tenure", "threshold": 12.5, "left": 1, "right": 2},
            {"loyal": 10, "churn": 30, "p_loyal": 11 / 42},
            {"loyal": 50, "churn": 10, "p_loyal": 51 / 62},
        ],
    }
    doc.update(changes)
    return doc


def test_model_round_trips_through_json(tmp_path: Path) -> None:
    model = TreeModel.from_dict(_tree_doc())
    model.save(tmp_path / "m.json")
    again = TreeModel.load(tmp_path / "m.json")
    assert again.to_dict() == model.to_dict()
    assert again.leaf_of({"tenure": "12", "Contract": "One year"}) == 1
    assert again.leaf_of({"tenure": "13", "Contract": "One year"}) == 2
    assert again.p_loyal(2) == 51 / 62 and again.path(2) == [(0, True)] and again.depth == 1


def _nodes(*nodes: dict[str, Any]) -> list[dict[str, Any]]:
    return list(nodes)


SPLIT0 = {"feature": "tenure", "threshold": 12.5, "left": 1, "right": 2}
LEAF = {"loyal": 1, "churn": 1, "p_loyal": 0.5}


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"nodes": None}, "nodes: expected a list"),
        ({"format": "other"}, "format"),
        (
            {"nodes": _nodes({**SPLIT0, "feature": "age"}, LEAF, LEAF)},
            "node 0: unknown feature 'age'",
        ),
        (
            {"nodes": _nodes({**SPLIT0, "right": 7}, LEAF, LEAF)},
            "node 0: right child 7 is not a node",
        ),
        (
            {"nodes": _nodes({**SPLIT0, "right": 1}, LEAF, LEAF)},
            "node 0: right child 1 is used twice",
        ),
        (
            {"nodes": _nodes({**SPLIT0, "right": 0}, LEAF, LEAF)},
            "right child 0 is its ancestor (a cycle)",
        ),
        ({"nodes": _nodes({**SPLIT0}, LEAF, LEAF, LEAF)}, "node(s) [3] not reachable"),
        (
            {"nodes": _nodes(SPLIT0, {"loyal": 1, "churn": 1}, LEAF)},
            "node 1: ['churn', 'loyal'] is neither",
        ),
        ({"nodes": _nodes(SPLIT0, {**LEAF, "p_loyal": 0.6}, LEAF)}, "node 1: p_loyal 0.6 is not"),
        ({"encoding": {}}, "encoding: no entry for numeric feature(s) tenure"),
        ({"encoding": {"tenure": {"scale": 3, "bits": 8}}}, "not a power of 10"),
    ],
)
def test_bad_model_is_refused(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(ModelError) as info:
        TreeModel.from_dict(_tree_doc(**changes))
    assert needle in str(info.value)


def test_missing_model_keys_are_named(tmp_path: Path) -> None:
    doc = _tree_doc()
    del doc["root"], doc["encoding"]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"m.json: model: missing key\(s\) encoding, root"):
        TreeModel.load(path)


# -- costs -------------------------------------------------------------------------


@needs_telco
def test_example_cost_file_fits_telco(telco: Customers) -> None:
    costs = load_costs(EXAMPLE_COSTS, telco)
    assert costs.is_hard("tenure") and costs.is_hard("gender") and costs.is_hard("TotalCharges")
    assert costs.move_cost("Contract", "Month-to-month", "One year") == 150
    assert costs.unit_cost("MonthlyCharges", "down") == 12
    assert costs.unit_cost("MonthlyCharges", "up") is None
    assert costs.profit.value({"MonthlyCharges": "29.85"}) == Fraction("358.2")


def test_profit_is_exact_and_linear() -> None:
    numeric = frozenset({"MonthlyCharges", "TotalCharges", "tenure"})
    expr = parse_profit("12 * MonthlyCharges + TotalCharges / 10 - 0.1 * (tenure - 3)", numeric)
    row = {"MonthlyCharges": "10.01", "TotalCharges": "100", "tenure": "4"}
    assert expr.value(row) == Fraction("120.12") + 10 - Fraction("0.1")
    for text, needle in [
        ("MonthlyCharges * tenure", "multiplies two columns"),
        ("12 / tenure", "divides by a column"),
        ("Contract", "'Contract' is not a numeric column"),
        ("MonthlyCharges ** 2", "not linear"),
        ("max(MonthlyCharges, 1)", "not linear"),
        ("12 *", "not an expression"),
    ]:
        with pytest.raises(CostError, match=needle.replace("*", r"\*")):
            parse_profit(text, numeric)


def _costs_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "hard": ["gender", "tenure"],
        "profit": "12 * MonthlyCharges",
        "soft": {
            "Contract": {"Month-to-month -> One year": 150},
            "MonthlyCharges": {"down": 12.0},
        },
    }
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"hard": ["gender", "Age"]}, "hard: 'Age' is not a column"),
        ({"hard": ["customerID"]}, "hard: 'customerID' is not a column"),
        ({"hard": ["Contract"]}, "soft.Contract: 'Contract' is both hard and soft"),
        (
            {"soft": {"Contract": {"Month-to-month -> Three year": 1}}},
            "'Three year' is not a value of Contract",
        ),
        (
            {"soft": {"Contract": {"Month-to-month to One year": 1}}},
            "soft.Contract.\"Month-to-month to One year\": expected 'from -> to'",
        ),
        (
            {"soft": {"Contract": {"Month-to-month -> One year -> Two year": 1}}},
            "expected 'from -> to'",
        ),
        (
            {"soft": {"Contract": {"Month-to-month -> One year": -5}}},
            '"Month-to-month -> One year": -5 is negative',
        ),
        ({"soft": {"Contract": {"Month-to-month -> One year": float("inf")}}}, "inf is not finite"),
        (
            {"soft": {"Contract": {"Month-to-month -> One year": "cheap"}}},
            "'cheap' is not a number",
        ),
        (
            {"soft": {"MonthlyCharges": {"70 -> 60": 1}}},
            "soft.MonthlyCharges.70 -> 60: MonthlyCharges is numeric",
        ),
        (
            {"soft": {"MonthlyCharges": {"down": float("nan")}}},
            "soft.MonthlyCharges.down: nan is not finite",
        ),
        ({"soft": {"Contract": {"down": 1}}}, "Contract is categorical"),
        ({"soft": {"Shoe": {"down": 1}}}, "soft.Shoe: 'Shoe' is not a column"),
        (
            {"profit": "MonthlyCharges * tenure"},
            "profit: 'MonthlyCharges * tenure' multiplies two columns",
        ),
        ({"profit": "12 * Contract"}, "profit: 'Contract' is not a numeric column"),
        ({"prfit": "1"}, "prfit: unknown key"),
    ],
)
def test_bad_costs_are_refused(changes: dict[str, Any], needle: str) -> None:
    customers = load_customers(SMALL)
    with pytest.raises(CostError) as info:
        parse_costs(_costs_doc(**changes), customers)
    assert needle in str(info.value)


def test_cost_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "costs.toml"
    path.write_text('hard = ["tenure"]\nprofit = "12 * MonthlyCharges"\n[soft.tenure]\nup = -1\n')
    with pytest.raises(CostError, match=r"costs.toml: soft.tenure: 'tenure' is both hard and soft"):
        load_costs(path, load_customers(SMALL))
    path.write_text("hard = [\n")
    with pytest.raises(CostError, match="not TOML"):
        load_costs(path, load_customers(SMALL))
    path.write_text('hard = ["tenure"]\n')
    with pytest.raises(CostError, match="profit: missing"):
        load_costs(path, load_customers(SMALL))


# -- planning ----------------------------------------------------------------------

# A hand-made tree (p_loyal in brackets):
#   0: Contract=Month-to-month <= 0.5 ? 1 : 2
#   1: leaf 90/10 (91/102)
#   2: MonthlyCharges <= 70.005 ? 3 : 4         (threshold_int 7000: 70.00 or less)
#   3: gender=Female <= 0.5 ? 5 : 6
#   4: leaf 20/80 (21/102)
#   5: leaf 60/40 (61/102)     male
#   6: leaf 70/30 (71/102)     female
HAND = json.loads((Path(__file__).parents[1] / "data" / "churn_hand_model.json").read_text())
CUSTOMER = {"gender": "Male", "tenure": "5", "Contract": "Month-to-month", "MonthlyCharges": "80"}
HAND_COSTS = (
    "customerID,gender,tenure,Contract,MonthlyCharges\n"
    "a,Male,5,Month-to-month,80\nb,Female,5,One year,80\nc,Male,5,Two year,20\n"
)


def _hand_costs(tmp_path: Path, text: str) -> Any:
    data = tmp_path / "hand.csv"
    data.write_text(HAND_COSTS)
    cols = ["customerID", "gender", "tenure", "Contract", "MonthlyCharges"]
    rows = [dict(zip(cols, line.split(","), strict=True)) for line in HAND_COSTS.split("\n")[1:-1]]
    customers = Customers([r["customerID"] for r in rows], rows, cols, None, source=str(data))
    path = tmp_path / "costs.toml"
    path.write_text(text)
    return load_costs(path, customers)


def test_best_action_is_the_cheapest_contract(tmp_path: Path) -> None:
    model = TreeModel.from_dict(HAND)
    costs = _hand_costs(
        tmp_path,
        'hard = ["gender"]\nprofit = "12 * MonthlyCharges"\n'
        '[soft.Contract]\n"Month-to-month -> One year" = 150\n"Month-to-month -> Two year" = 300\n'
        "[soft.MonthlyCharges]\ndown = 12\n",
    )
    plan = plan_customer(model, costs, "a", CUSTOMER)
    assert (plan.leaf, plan.p_loyal, plan.segment) == (4, Fraction(21, 102), "unloyal")
    assert plan.target == 1 and plan.p_target == Fraction(91, 102)
    assert plan.actions == (Action("Contract", "Month-to-month", "One year", Fraction(150)),)
    assert plan.net_profit == 960 * Fraction(70, 102) - 150
    # Leaf 6 needs a woman: unreachable through the hard gender; leaf 5 by a discount.
    ints = encode_row(model, CUSTOMER)
    assert reach(model, costs, CUSTOMER, ints, leaf_conditions(model, 6)) is None
    assert reach(model, costs, CUSTOMER, ints, leaf_conditions(model, 5)) == (
        Action("MonthlyCharges", "80.00", "70.00", Fraction(120)),
    )


def test_equal_costs_choose_the_first_value(tmp_path: Path) -> None:
    model = TreeModel.from_dict(HAND)
    costs = _hand_costs(
        tmp_path,
        'profit = "12 * MonthlyCharges"\n[soft.Contract]\n'
        '"Month-to-month -> Two year" = 150\n"Month-to-month -> One year" = 150\n',
    )
    plan = plan_customer(model, costs, "a", CUSTOMER)
    assert plan.actions[0].new == "One year" and plan.target == 1


def test_numeric_discount_when_the_contract_cannot_change(tmp_path: Path) -> None:
    model = TreeModel.from_dict(HAND)
    costs = _hand_costs(
        tmp_path, 'profit = "12 * MonthlyCharges"\n[soft.MonthlyCharges]\ndown = 12\n'
    )
    plan = plan_customer(model, costs, "a", CUSTOMER)
    assert plan.target == 5
    assert plan.actions == (Action("MonthlyCharges", "80.00", "70.00", Fraction(120)),)
    assert plan.net_profit == 960 * Fraction(40, 102) - 120
    # With gender soft, leaf 6 (71/102) is better: 960 * 50/102 - 120 - 10.
    costs = _hand_costs(
        tmp_path,
        'profit = "12 * MonthlyCharges"\n[soft.MonthlyCharges]\ndown = 12\n'
        '[soft.gender]\n"Male -> Female" = 10\n',
    )
    plan = plan_customer(model, costs, "a", CUSTOMER)
    assert plan.target == 6 and plan.net_profit == 960 * Fraction(50, 102) - 130
    assert [a.attribute for a in plan.actions] == ["MonthlyCharges", "gender"]
    assert plan.action_set == (("MonthlyCharges", "70.00"), ("gender", "Female"))


def test_no_profitable_action(tmp_path: Path) -> None:
    model = TreeModel.from_dict(HAND)
    costs = _hand_costs(
        tmp_path,
        'profit = "12 * MonthlyCharges"\n[soft.Contract]\n"Month-to-month -> One year" = 700\n'
        "[soft.MonthlyCharges]\ndown = 40\n",
    )
    plan = plan_customer(model, costs, "a", CUSTOMER)
    assert plan.target is None and plan.actions == () and plan.net_profit == 0
    # Nothing allowed at all: also no plan; a loyal customer is never planned for.
    costs = _hand_costs(tmp_path, 'profit = "12 * MonthlyCharges"\n')
    assert plan_customer(model, costs, "a", CUSTOMER).target is None
    loyal = {**CUSTOMER, "Contract": "One year"}
    plan = plan_customer(model, costs, "b", loyal)
    assert plan.segment == "loyal" and plan.target is None


def test_numeric_move_up(tmp_path: Path) -> None:
    model = TreeModel.from_dict(_tree_doc())  # tenure <= 12.5 ? 11/42 : 51/62
    costs = _hand_costs(tmp_path, 'profit = "12 * MonthlyCharges"\n[soft.tenure]\nup = 2.5\n')
    plan = plan_customer(model, costs, "a", CUSTOMER)
    assert plan.actions == (Action("tenure", "5", "13", Fraction(20)),)
    assert plan.net_profit == 960 * (Fraction(51, 62) - Fraction(11, 42)) - 20
    costs = _hand_costs(tmp_path, 'profit = "12 * MonthlyCharges"\n[soft.tenure]\ndown = 2.5\n')
    assert plan_customer(model, costs, "a", CUSTOMER).target is None


def _plan(cid: str, net: int, cost: int, *actions: tuple[str, str]) -> CustomerPlan:
    acts = tuple(Action(a, "x", v, Fraction(cost, len(actions))) for a, v in actions)
    return CustomerPlan(cid, 4, Fraction(1, 5), "unloyal", 1, Fraction(4, 5), acts, Fraction(net))


def test_limits_on_action_sets_and_budget() -> None:
    x, y, z = ("Contract", "One year"), ("Contract", "Two year"), ("MonthlyCharges", "70.00")
    plans = {
        "c1": _plan("c1", 100, 50, x),
        "c2": _plan("c2", 60, 10, x),
        "c3": _plan("c3", 150, 200, y),
        "c4": _plan("c4", 160, 30, x, z),
        "c5": CustomerPlan("c5", 1, Fraction(4, 5), "loyal"),
    }
    everyone = select(plans)
    assert everyone.served == {"c1", "c2", "c3", "c4"} and everyone.sets_used == 3
    assert everyone.net_profit == 470 and everyone.cost == 290
    # Sets by summed profit: x 160, {x, z} 160 (tie: text "Contract -> One year" first), y 150.
    assert [s.key for s in everyone.sets] == [(x,), (x, z), (y,)]
    one = select(plans, max_action_sets=1)
    assert one.served == {"c1", "c2"} and one.sets_used == 1 and one.net_profit == 160
    two = select(plans, max_action_sets=2)
    assert two.served == {"c1", "c2", "c4"} and two.sets_used == 2
    assert select(plans, max_action_sets=0).served == frozenset()
    # Budget 90: c4 (160, cost 30), c3 too dear (200), c1 (100, 50), c2 (60, 10) fits exactly.
    budget = select(plans, budget=90)
    assert budget.served == {"c4", "c1", "c2"} and budget.cost == 90
    assert select(plans, budget="79.5").served == {"c4", "c2"}
    with pytest.raises(Exception, match="not both"):
        select(plans, max_action_sets=1, budget=10)


@needs_telco
def test_telco_plans_reach_their_targets(model_file: Path, telco: Customers) -> None:
    model = TreeModel.load(model_file)
    costs = load_costs(EXAMPLE_COSTS, telco)
    plans = plan_all(model, costs, telco)
    planned = [p for p in plans.values() if p.target is not None]
    assert planned and all(p.segment == "unloyal" and p.net_profit > 0 for p in planned)
    rows = dict(zip(telco.ids, telco.rows, strict=True))
    for p in planned:
        moved = dict(rows[p.customer])
        for a in p.actions:
            assert moved[a.attribute] == a.old or Decimal(moved[a.attribute]) == Decimal(a.old)
            moved[a.attribute] = a.new
        assert model.leaf_of(moved) == p.target
        assert model.p_loyal_exact(p.target) > p.p_loyal
        profit = costs.profit.value(rows[p.customer])
        assert p.net_profit == profit * (p.p_target - p.p_loyal) - p.cost
    for k in (1, 3):
        chosen = select(plans, max_action_sets=k)
        assert chosen.sets_used == k
    chosen = select(plans, budget=5000)
    assert 0 < chosen.cost <= 5000


# -- the command -------------------------------------------------------------------


def _main(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setattr(sys, "argv", ["mpc-crm"])
    return mpc_cli.main(list(argv))


def test_cli_train_on_a_small_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.json"
    assert _main(monkeypatch, "churn", "train", "--data", str(SMALL), "--out", str(out)) == 0
    text = capsys.readouterr().out
    assert "grid search" in text and "held out (12 customers)" in text and f"wrote {out}" in text
    model = TreeModel.load(out)
    assert model.training["rows"] == 48 and model.metrics["n_test"] == 12


@needs_telco
def test_cli_plan(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    model_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "plan.json"
    args = ["churn", "plan", "--data", str(TELCO), "--model", str(model_file)]
    args += ["--costs", str(EXAMPLE_COSTS), "--out", str(out)]
    assert _main(monkeypatch, *args, "--plain", "--max-action-sets", "2") == 0
    text = capsys.readouterr().out
    assert "unloyal" in text and "action sets by net profit" in text
    doc = json.loads(out.read_text())
    totals = doc["totals"]
    assert totals["customers"] == 7043 and totals["action_sets"] == 2
    assert totals["loyal"] + totals["unloyal"] == 7043
    served = [c for c in doc["customers"].values() if c["served"]]
    assert len(served) == totals["served"] > 0
    assert abs(sum(c["net_profit"] for c in served) - totals["net_profit"]) < 1e-6
    sets = {tuple((a["attribute"], a["to"]) for a in c["actions"]) for c in served}
    assert len(sets) == 2
    loyal = next(c for c in doc["customers"].values() if c["segment"] == "loyal")
    assert loyal["actions"] == [] and loyal["p_loyal_target"] is None and not loyal["served"]

    bad = tmp_path / "bad.toml"
    bad.write_text('profit = "12 * MonthlyCharges"\n[soft.Contract]\n"Monthly -> One year" = 1\n')
    assert _main(monkeypatch, *args[:-4], "--costs", str(bad), "--out", str(out), "--plain") == 1
    err = capsys.readouterr().err
    assert "bad.toml" in err and "'Monthly' is not a value of Contract" in err
    with pytest.raises(SystemExit):
        _main(monkeypatch, *args, "--max-action-sets", "2", "--budget", "10")
