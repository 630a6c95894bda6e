"""``mpc-crm simulate --baskets``: its check against the plaintext, and one real multi-process run."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crm.recommender.copurchase import cooccurrence
from crm.recommender.copurchase_simulate import ProgressBar, _customers, check_counts
from mpc.errors import ParameterError

BASKETS = [("bread", "butter"), ("bread", "jam", "milk"), ("milk",), ("butter", "jam"), ("bread", "milk")]


def lists(co, products, k):
    return {x: {"baskets_with": co.support(x), "recommendations": [[y, c] for y, c in co.recommend_for(x, k)]}
            for x in products}


def test_check_counts_finds_every_difference() -> None:
    plain = cooccurrence(BASKETS)
    same = cooccurrence(BASKETS)
    assert check_counts(plain, same, lists(same, ["bread", "jam"], 2), 2) == []

    tampered = cooccurrence(BASKETS)
    i, j = plain.index["bread"], plain.index["jam"]
    tampered.matrix[i, j] += 1
    tampered.matrix[j, i] += 1
    problems = check_counts(plain, tampered, lists(tampered, ["bread"], 2), 2)
    assert "2 of 16 counts C(X, Y) differ from the plaintext" in problems
    assert "bread: top-2 list differs from the plaintext" in problems

    fewer = cooccurrence(BASKETS[:-1], plain.items)
    problems = check_counts(plain, fewer, lists(fewer, ["milk"], 0), 0)
    assert "4 baskets published, 5 expected" in problems
    assert "milk: in 2 baskets, expected 3" in problems
    other = cooccurrence([*BASKETS, ("tea", "milk")])
    assert check_counts(plain, other, {}, 0) == ["the catalogue differs (5 items published, 4 expected)"]
    assert np.array_equal(plain.matrix, same.matrix)


def test_customers_argument() -> None:
    assert _customers("all", 9835) == 9835
    assert _customers("12", 20) == 12
    for bad in ("9", "21", "many"):
        with pytest.raises(ParameterError, match="--customers"):
            _customers(bad, 20)


def test_progress_bar_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    bar = ProgressBar(10, "customers")
    bar.printed -= 10  # as if the last line were 10 s old
    assert bar.update(0) is None
    assert bar.update(5) is not None
    bar.update(6)  # another 10 % step, but within 5 s of the last line
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "50%  5/10 customers" in out


@pytest.mark.slow
def test_simulate_with_baskets_processes(tmp_path: Path) -> None:
    rng = random.Random(4)
    products = [f"product {k}" for k in range(20)]
    path = tmp_path / "baskets.csv"
    path.write_text("".join(",".join(rng.sample(products, rng.randint(1, 5))) + "\n" for _ in range(16)))
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "mpc", "simulate", "--baskets", str(path), "--customers", "12",
         "--key-bits", "1024", "--workers", "2", "--product", "product 3", "--k", "3", "--out", str(out),
         "--timeout", "200", "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads(out.read_text())
    assert rep["ok"] and rep["check"] == {"equal_to_plaintext": True, "problems": []}
    assert rep["publish"]["contributors"] == 12 and rep["params"]["customers"] == 12
    lines = [line.split(",") for line in path.read_text().splitlines()]
    catalogue = sorted({i for b in lines for i in b})  # every product in the file, bought by the 12 or not
    plain = cooccurrence(lines[:12], catalogue)
    assert rep["products"]["product 3"]["recommendations"] == [
        {"item": y, "count": c} for y, c in plain.recommend_for("product 3", 3)
    ]
    assert rep["params"]["layout"]["items"] == len(catalogue)
    assert all(rep["bytes_sent"][p] > 0 for p in ("sp", "psp", "customers", "admin"))
    assert "Published counts equal the plaintext counts" in proc.stdout
