"""The churn model: a decision tree trained in the clear, stored as a self-contained JSON file.

:func:`train` chooses the tree's depth and leaf size by cross-validated
ROC-AUC and refits it on three quarters of the customers; the other quarter
measures it. The result is a :class:`TreeModel`, which anyone can use
without scikit-learn: walk a row from the root, going left when the value is
at most the node's threshold, and read the leaf's ``p_loyal``.

The private scoring compares integers, so every numeric feature has an
encoding: a value ``v`` is the integer ``round(v * scale)`` (exact decimal
arithmetic), and a threshold ``t`` becomes ``floor(t * scale)``, with ``t``
the decimal number written in the JSON. For values with at most
``log10(scale)`` decimals, ``v <= t`` exactly when ``round(v * scale) <=
floor(t * scale)``, so both walks reach the same leaf. The format is
documented in ``docs/churn.md``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from crm.churn.data import (
    NUMERIC_COLUMNS,
    Customers,
    _check_number,
    decimals,
    feature_names,
    feature_value,
    numeric_value,
    split_feature,
)
from crm.churn.errors import DataError, ModelError

__all__ = [
    "DEPTHS",
    "FORMAT",
    "MIN_LEAVES",
    "VERSION",
    "Encoding",
    "Leaf",
    "Split",
    "TrainResult",
    "TreeModel",
    "encode_row",
    "encode_value",
    "feature_matrix",
    "make_encoding",
    "threshold_int",
    "train",
]

FORMAT = "mpc-crm/churn-tree"
VERSION = 1
DEPTHS = (3, 4, 5, 6, 7, 8)
MIN_LEAVES = (10, 20, 50, 100, 200)


@dataclass(frozen=True)
class Encoding:
    """How a numeric feature becomes an integer: ``round(value * scale)``, at most ``2^bits - 2``."""

    scale: int
    bits: int

    @property
    def max_value(self) -> int:
        """The largest encoded value allowed (``2^bits - 2``: one bit of headroom for comparisons)."""
        return (1 << self.bits) - 2


ONE_HOT = Encoding(scale=1, bits=1)
"""A one-hot feature encodes as 0 or 1."""


@dataclass(frozen=True)
class Split:
    """An internal node: go to ``left`` when the feature's value is <= ``threshold``, else ``right``."""

    feature: str
    threshold: float
    left: int
    right: int


@dataclass(frozen=True)
class Leaf:
    """A leaf: how many training customers in it stayed (``loyal``) and left (``churn``)."""

    loyal: int
    churn: int

    @property
    def n(self) -> int:
        return self.loyal + self.churn

    @property
    def p_loyal_exact(self) -> Fraction:
        """``(loyal + 1) / (n + 2)``: the probability of staying, smoothed (Laplace)."""
        return Fraction(self.loyal + 1, self.n + 2)

    @property
    def p_loyal(self) -> float:
        return float(self.p_loyal_exact)


def _threshold_decimal(threshold: float) -> Fraction:
    """The threshold as the decimal number its shortest repr writes (the JSON's text)."""
    return Fraction(Decimal(repr(float(threshold))))


@dataclass(frozen=True, eq=False)
class TreeModel:
    """A trained tree; checked on construction (a bad structure raises :class:`ModelError`).

    ``nodes[i]`` is a :class:`Split` or a :class:`Leaf`; node indices are
    scikit-learn's (the root is 0). ``encoding`` has one entry per numeric
    feature (a feature without ``=``); one-hot features encode as 0/1.
    """

    features: tuple[str, ...]
    encoding: Mapping[str, Encoding]
    nodes: tuple[Split | Leaf, ...]
    root: int = 0
    metrics: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    _parent: dict[int, tuple[int, bool]] = field(init=False, repr=False)
    _depth: int = field(init=False, repr=False)
    _threshold: dict[int, Fraction] = field(init=False, repr=False)
    _threshold_int: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "nodes", tuple(self.nodes))
        self._check_features()
        parent, depth = self._check_structure()
        object.__setattr__(self, "_parent", parent)
        object.__setattr__(self, "_depth", depth)
        # Thresholds as exact decimals and as integers, computed once for the walks.
        exact = {i: _threshold_decimal(self.split(i).threshold) for i in self.internal_nodes()}
        object.__setattr__(self, "_threshold", exact)
        ints = {i: threshold_int(self, i) for i in self.internal_nodes()}
        object.__setattr__(self, "_threshold_int", ints)

    def _check_features(self) -> None:
        if len(set(self.features)) != len(self.features):
            twice = sorted({f for f in self.features if self.features.count(f) > 1})
            raise ModelError(f"features named twice: {', '.join(twice)}")
        numeric = [f for f in self.features if split_feature(f)[1] is None]
        missing = [f for f in numeric if f not in self.encoding]
        if missing:
            raise ModelError(f"encoding: no entry for numeric feature(s) {', '.join(missing)}")
        extra = [f for f in self.encoding if f not in numeric]
        if extra:
            raise ModelError(f"encoding: {', '.join(extra)} not numeric features of the model")
        for name, enc in self.encoding.items():
            if not isinstance(enc, Encoding):
                raise ModelError(f"encoding[{name!r}]: not an Encoding")
            if enc.scale < 1 or 10 ** (len(str(enc.scale)) - 1) != enc.scale:
                raise ModelError(f"encoding[{name!r}].scale: {enc.scale} is not a power of 10")
            if enc.bits < 2:
                raise ModelError(f"encoding[{name!r}].bits: {enc.bits} < 2")

    def _check_structure(self) -> tuple[dict[int, tuple[int, bool]], int]:
        n = len(self.nodes)
        if not n:
            raise ModelError("nodes: empty")
        if not 0 <= self.root < n:
            raise ModelError(f"root: {self.root} is not a node (0..{n - 1})")
        known = set(self.features)
        parent: dict[int, tuple[int, bool]] = {}
        depth = 0
        seen = {self.root}
        stack = [(self.root, 0)]
        while stack:
            i, d = stack.pop()
            node = self.nodes[i]
            if isinstance(node, Leaf):
                if node.loyal < 0 or node.churn < 0:
                    raise ModelError(f"node {i}: negative count")
                depth = max(depth, d)
                continue
            if not isinstance(node, Split):
                raise ModelError(f"node {i}: neither a Split nor a Leaf")
            if node.feature not in known:
                raise ModelError(f"node {i}: unknown feature {node.feature!r}")
            if not math.isfinite(node.threshold):
                raise ModelError(f"node {i}: threshold {node.threshold} is not finite")
            for child, right in ((node.left, False), (node.right, True)):
                side = "right" if right else "left"
                if not 0 <= child < n:
                    raise ModelError(f"node {i}: {side} child {child} is not a node (0..{n - 1})")
                if child in seen:
                    if self._is_ancestor(child, i, parent):
                        raise ModelError(
                            f"node {i}: {side} child {child} is its ancestor (a cycle)"
                        )
                    raise ModelError(f"node {i}: {side} child {child} is used twice")
                seen.add(child)
                parent[child] = (i, right)
                stack.append((child, d + 1))
        unreachable = sorted(set(range(n)) - seen)
        if unreachable:
            raise ModelError(f"node(s) {unreachable} not reachable from the root")
        return parent, depth

    def _is_ancestor(self, a: int, i: int, parent: dict[int, tuple[int, bool]]) -> bool:
        while True:
            if i == a:
                return True
            if i not in parent:
                return False
            i = parent[i][0]

    # -- structure --------------------------------------------------------------

    @property
    def depth(self) -> int:
        """The largest number of splits from the root to a leaf."""
        return self._depth

    def leaves(self) -> list[int]:
        """Leaf node indices, ascending."""
        return [i for i, node in enumerate(self.nodes) if isinstance(node, Leaf)]

    def internal_nodes(self) -> list[int]:
        """Split node indices, ascending."""
        return [i for i, node in enumerate(self.nodes) if isinstance(node, Split)]

    def path(self, leaf: int) -> list[tuple[int, bool]]:
        """The splits from the root to ``leaf``: ``(node, went_right)``, root first."""
        self._leaf(leaf)
        steps: list[tuple[int, bool]] = []
        while leaf in self._parent:
            leaf, right = self._parent[leaf]
            steps.append((leaf, right))
        return steps[::-1]

    def split(self, node: int) -> Split:
        """The split at ``node`` (a :class:`ModelError` when it is a leaf)."""
        found = self.nodes[node]
        if not isinstance(found, Split):
            raise ModelError(f"node {node} is a leaf, not a split")
        return found

    def _leaf(self, leaf: int) -> Leaf:
        if not 0 <= leaf < len(self.nodes) or not isinstance(self.nodes[leaf], Leaf):
            raise ModelError(f"node {leaf} is not a leaf")
        found = self.nodes[leaf]
        assert isinstance(found, Leaf)
        return found

    def p_loyal(self, leaf: int) -> float:
        """The smoothed probability of staying of customers in ``leaf``."""
        return self._leaf(leaf).p_loyal

    def p_loyal_exact(self, leaf: int) -> Fraction:
        """:meth:`p_loyal` as the exact fraction ``(loyal + 1) / (n + 2)``."""
        return self._leaf(leaf).p_loyal_exact

    @property
    def numeric_features(self) -> list[str]:
        return [f for f in self.features if split_feature(f)[1] is None]

    @property
    def columns(self) -> list[str]:
        """The data columns the features come from, in feature order."""
        return list(dict.fromkeys(split_feature(f)[0] for f in self.features))

    def values(self, column: str) -> list[str]:
        """The values of a categorical column that have a one-hot feature, in feature order."""
        return [
            v for f in self.features for c, v in [split_feature(f)] if c == column and v is not None
        ]

    def encoding_of(self, feature: str) -> Encoding:
        """The feature's encoding (:data:`ONE_HOT` for a one-hot feature)."""
        if feature not in self.features:
            raise ModelError(f"unknown feature {feature!r}")
        return self.encoding.get(feature, ONE_HOT)

    # -- walks ------------------------------------------------------------------

    def leaf_of(self, row: Mapping[str, str]) -> int:
        """The leaf a customer's raw row reaches (exact decimal comparisons)."""
        i = self.root
        while isinstance(node := self.nodes[i], Split):
            column, value = split_feature(node.feature)
            text = _get(row, column)
            if value is None:
                x = Fraction(numeric_value(row, column))
            else:
                x = Fraction(int(text == value))
            i = node.left if x <= self._threshold[i] else node.right
        return i

    def leaf_of_encoded(self, ints: Mapping[str, int]) -> int:
        """The leaf reached by encoded features (``x <= threshold_int`` goes left)."""
        i = self.root
        while isinstance(node := self.nodes[i], Split):
            if node.feature not in ints:
                raise DataError(None, "missing encoded feature", column=node.feature)
            i = node.left if ints[node.feature] <= self._threshold_int[i] else node.right
        return i

    # -- JSON -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        nodes: list[dict[str, Any]] = []
        for node in self.nodes:
            if isinstance(node, Split):
                nodes.append(
                    {
                        "feature": node.feature,
                        "threshold": float(node.threshold),
                        "left": node.left,
                        "right": node.right,
                    }
                )
            else:
                nodes.append({"loyal": node.loyal, "churn": node.churn, "p_loyal": node.p_loyal})
        return {
            "format": FORMAT,
            "version": VERSION,
            "target": "loyal",
            "features": list(self.features),
            "encoding": {f: {"scale": e.scale, "bits": e.bits} for f, e in self.encoding.items()},
            "root": self.root,
            "nodes": nodes,
            "metrics": dict(self.metrics),
            "training": dict(self.training),
        }

    @classmethod
    def from_dict(cls, doc: Any) -> TreeModel:
        """Check and build a model from its JSON form (any problem is a :class:`ModelError`)."""
        if not isinstance(doc, dict):
            raise ModelError("model: expected a JSON object")
        missing = [k for k in _MODEL_KEYS if k not in doc]
        if missing:
            raise ModelError(f"model: missing key(s) {', '.join(missing)}")
        if doc["format"] != FORMAT:
            raise ModelError(f"format: {doc['format']!r}, expected {FORMAT!r}")
        if doc["version"] != VERSION:
            raise ModelError(f"version: {doc['version']!r}, this code reads version {VERSION}")
        if doc["target"] != "loyal":
            raise ModelError(f"target: {doc['target']!r}, expected 'loyal'")
        features = doc["features"]
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise ModelError("features: expected a list of names")
        encoding_doc = doc["encoding"]
        if not isinstance(encoding_doc, dict):
            raise ModelError("encoding: expected an object")
        encoding = {}
        for name, enc in encoding_doc.items():
            if not isinstance(enc, dict) or set(enc) != {"scale", "bits"}:
                raise ModelError(f"encoding[{name!r}]: expected {{'scale': int, 'bits': int}}")
            scale, bits = (
                _int(enc["scale"], f"encoding[{name!r}].scale"),
                _int(enc["bits"], f"encoding[{name!r}].bits"),
            )
            encoding[name] = Encoding(scale=scale, bits=bits)
        if not isinstance(doc["nodes"], list):
            raise ModelError("nodes: expected a list")
        nodes = [_node_from_dict(i, n) for i, n in enumerate(doc["nodes"])]
        for key in ("metrics", "training"):
            if not isinstance(doc.get(key, {}), dict):
                raise ModelError(f"{key}: expected an object")
        return cls(
            features=tuple(features),
            encoding=encoding,
            nodes=tuple(nodes),
            root=_int(doc["root"], "root"),
            metrics=doc.get("metrics", {}),
            training=doc.get("training", {}),
        )

    @classmethod
    def load(cls, path: str | Path) -> TreeModel:
        """Read and check ``model.json``; errors name the file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"{path}: cannot read: {exc}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path}: not JSON ({exc})") from None
        try:
            return cls.from_dict(doc)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")


_MODEL_KEYS = ("format", "version", "target", "features", "encoding", "root", "nodes")
_SPLIT_KEYS = {"feature", "threshold", "left", "right"}
_LEAF_KEYS = {"loyal", "churn", "p_loyal"}


def _int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ModelError(f"{where}: {value!r} is not an integer")
    return value


def _node_from_dict(i: int, doc: Any) -> Split | Leaf:
    if isinstance(doc, dict) and set(doc) == _SPLIT_KEYS:
        feature, threshold = doc["feature"], doc["threshold"]
        if not isinstance(feature, str):
            raise ModelError(f"node {i}: feature {feature!r} is not a name")
        if not isinstance(threshold, int | float) or isinstance(threshold, bool):
            raise ModelError(f"node {i}: threshold {threshold!r} is not a number")
        return Split(
            feature,
            float(threshold),
            _int(doc["left"], f"node {i}.left"),
            _int(doc["right"], f"node {i}.right"),
        )
    if isinstance(doc, dict) and set(doc) == _LEAF_KEYS:
        leaf = Leaf(_int(doc["loyal"], f"node {i}.loyal"), _int(doc["churn"], f"node {i}.churn"))
        if leaf.loyal < 0 or leaf.churn < 0:
            raise ModelError(f"node {i}: negative count")
        if doc["p_loyal"] != leaf.p_loyal:
            raise ModelError(
                f"node {i}: p_loyal {doc['p_loyal']!r} is not (loyal + 1) / (n + 2) = {leaf.p_loyal!r}"
            )
        return leaf
    keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
    raise ModelError(
        f"node {i}: {keys} is neither a split {sorted(_SPLIT_KEYS)} nor a leaf {sorted(_LEAF_KEYS)}"
    )


def _get(row: Mapping[str, str], column: str) -> str:
    if column not in row:
        raise DataError(None, "missing from the row", column=column)
    return row[column]


# -- integer encoding -------------------------------------------------------------


def encode_value(model: TreeModel, feature: str, raw: str | float) -> int:
    """A feature's value as the integer the private walk compares.

    Numeric: ``round(value * scale)`` in exact decimal arithmetic (``raw`` is
    the text of the field or a number; a blank ``TotalCharges`` is 0).
    One-hot ``C=v``: ``raw`` is the text of column ``C`` (1 when it is ``v``)
    or the feature's value 0 or 1. A negative value or one above the
    encoding's ``2^bits - 2`` is a :class:`DataError`.
    """
    enc = model.encoding_of(feature)
    column, value = split_feature(feature)
    if value is not None and isinstance(raw, str):
        return int(raw == value)
    if isinstance(raw, str):
        problem = _check_number(column, raw.strip())
        if problem:
            raise DataError(None, problem, column=column)
        exact = Fraction(Decimal(raw.strip() or "0"))
    else:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise DataError(None, f"{raw!r} is not a finite number", column=feature)
        exact = Fraction(Decimal(repr(raw)))
    if value is not None:
        if exact not in (0, 1):
            raise DataError(None, f"{raw!r}: a one-hot feature is 0 or 1", column=feature)
        return int(exact)
    if exact < 0:
        raise DataError(None, f"{raw!r} is negative", column=feature)
    x = round(exact * enc.scale)
    if x > enc.max_value:
        raise DataError(
            None,
            f"{raw!r} encodes to {x}, above the model's limit 2^{enc.bits} - 2 = {enc.max_value}",
            column=feature,
        )
    return x


def encode_row(model: TreeModel, row: Mapping[str, str]) -> dict[str, int]:
    """Every feature of the model for one raw row, encoded (:func:`encode_value`)."""
    return {f: encode_value(model, f, _get(row, split_feature(f)[0])) for f in model.features}


def threshold_int(model: TreeModel, node: int) -> int:
    """``floor(threshold * scale)``: ``x <= threshold_int`` iff ``value <= threshold``.

    ``threshold`` is the decimal its shortest repr writes (the JSON text),
    ``x`` any encoded value (``round(value * scale)`` of a value with at most
    ``log10(scale)`` decimals).
    """
    split = model.split(node)
    scale = model.encoding_of(split.feature).scale
    return math.floor(_threshold_decimal(split.threshold) * scale)


def make_encoding(customers: Customers, features: Iterable[str]) -> dict[str, Encoding]:
    """The encoding of each numeric feature from the data: scale ``10^d``, ``d`` the most
    decimals written in the column; bits of ``2 * max + 1`` (at least 2)."""
    encoding = {}
    for feature in features:
        column, value = split_feature(feature)
        if value is not None:
            continue
        texts = [row[column] for row in customers.rows]
        scale = 10 ** max(decimals(t) for t in texts)
        top = max(round(Fraction(Decimal(t or "0")) * scale) for t in texts)
        encoding[feature] = Encoding(scale=scale, bits=max(2, (2 * top + 1).bit_length()))
    return encoding


# -- training ---------------------------------------------------------------------


def feature_matrix(customers: Customers, features: Sequence[str]) -> np.ndarray:
    """``len(customers) x len(features)`` float64 matrix of :func:`feature_value`."""
    return np.array(
        [[feature_value(row, f) for f in features] for row in customers.rows], dtype=np.float64
    ).reshape(len(customers.rows), len(features))


@dataclass(frozen=True, eq=False)
class TrainResult:
    """A trained model with what produced it.

    ``estimator`` is the refitted scikit-learn tree, ``X`` the feature matrix
    of all customers (rows in file order), ``train_rows``/``test_rows`` the
    split (row positions).
    """

    model: TreeModel
    estimator: Any
    X: np.ndarray
    train_rows: np.ndarray
    test_rows: np.ndarray
    seconds: float

    @property
    def params(self) -> dict[str, int]:
        return dict(self.model.training["chosen"])


def train(
    customers: Customers,
    *,
    seed: int = 0,
    depths: Sequence[int] = DEPTHS,
    min_leaves: Sequence[int] = MIN_LEAVES,
    folds: int = 5,
) -> TrainResult:
    """Train the churn tree (75/25 stratified split, grid search by ``folds``-fold CV AUC).

    The tree is refitted on the training three quarters; the held-out
    quarter gives accuracy (churn predicted when ``p_loyal < 1/2``) and
    ROC-AUC, both with the smoothed leaf probabilities of the exported model.
    """
    if customers.labels is None:
        raise DataError(customers.source, f"no label column {customers.label!r}; training needs it")
    missing = [c for c in NUMERIC_COLUMNS if c not in customers.columns]
    if missing:
        raise DataError(customers.source, f"missing column(s) {', '.join(missing)}")
    import sklearn  # imported here: loading a model needs no scikit-learn
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
    from sklearn.tree import DecisionTreeClassifier

    started = time.perf_counter()
    features = feature_names(customers)
    X = feature_matrix(customers, features)
    y = np.array(customers.labels, dtype=np.int64)
    train_rows, test_rows = train_test_split(
        np.arange(len(y)), test_size=0.25, stratify=y, random_state=seed
    )
    search = GridSearchCV(
        DecisionTreeClassifier(random_state=seed),
        {"max_depth": list(depths), "min_samples_leaf": list(min_leaves)},
        scoring="roc_auc",
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
    )
    search.fit(X[train_rows], y[train_rows])
    tree = search.best_estimator_
    chosen = {k: int(v) for k, v in search.best_params_.items()}
    nodes = _export_nodes(tree, features, X[train_rows], y[train_rows])
    training = {
        "data": customers.source,
        "rows": len(y),
        "seed": seed,
        "split": "75/25 stratified",
        "grid": {"max_depth": list(depths), "min_samples_leaf": list(min_leaves)},
        "folds": folds,
        "chosen": chosen,
        "sklearn": sklearn.__version__,
    }
    model = TreeModel(
        features=tuple(features),
        encoding=make_encoding(customers, features),
        nodes=tuple(nodes),
        training=training,
    )
    leaves = tree.apply(X)
    for k, row in enumerate(customers.rows):
        if model.leaf_of(row) != leaves[k]:
            raise ModelError(
                f"exported tree disagrees with scikit-learn on customer {customers.ids[k]!r}"
            )
    p_loyal = np.array([model.p_loyal(int(leaves[k])) for k in test_rows])
    y_test = y[test_rows]
    metrics = {
        "cv_auc": float(search.best_score_),
        "test_auc": float(roc_auc_score(y_test, 1.0 - p_loyal)),
        "test_accuracy": float(np.mean((p_loyal < 0.5) == (y_test == 1))),
        "n_train": len(train_rows),
        "n_test": len(test_rows),
        "nodes": len(nodes),
        "leaves": len(model.leaves()),
        "depth": model.depth,
    }
    model = TreeModel(
        features=model.features,
        encoding=model.encoding,
        nodes=model.nodes,
        metrics=metrics,
        training=training,
    )
    return TrainResult(
        model=model,
        estimator=tree,
        X=X,
        train_rows=np.asarray(train_rows),
        test_rows=np.asarray(test_rows),
        seconds=time.perf_counter() - started,
    )


def _export_nodes(
    tree: Any, features: Sequence[str], X: np.ndarray, y: np.ndarray
) -> list[Split | Leaf]:
    """scikit-learn's ``tree_`` as nodes, leaf counts recounted exactly from the training rows."""
    t = tree.tree_
    churn = np.bincount(tree.apply(X), weights=y, minlength=t.node_count).round().astype(int)
    total = np.bincount(tree.apply(X), minlength=t.node_count)
    nodes: list[Split | Leaf] = []
    for i in range(t.node_count):
        if t.children_left[i] == -1:
            nodes.append(Leaf(loyal=int(total[i] - churn[i]), churn=int(churn[i])))
        else:
            nodes.append(
                Split(
                    feature=features[int(t.feature[i])],
                    threshold=float(t.threshold[i]),
                    left=int(t.children_left[i]),
                    right=int(t.children_right[i]),
                )
            )
    return nodes
