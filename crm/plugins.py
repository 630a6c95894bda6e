"""The CRM's plugins for the framework (entry points in pyproject.toml, see mpc.plugins).

Party-server plugins: churn (scoring and planning at the SP; the protocol's PSP
side), the recommender (both servers, when their config names its parameters),
the catalogue (the SP: static recommendations and co-purchase counts).
Commands: ``mpc-crm recommend``, ``catalog``, ``churn``. Simulations: the
private recommender (``--ratings``/``--synthetic``) and co-purchase counts
(``--baskets``).
"""

from __future__ import annotations

import argparse
from typing import Any


class ChurnPlugin:
    name = "churn"

    def attach(self, host: Any) -> object | None:
        if host.config.churn_model is None and host.role != "psp":
            return None
        from crm.churn.service import ChurnService

        return ChurnService(host, host.config.churn_model)


class RecommenderPlugin:
    name = "recommender"

    def attach(self, host: Any) -> object | None:
        if host.config.recommender is None:
            return None
        from crm.recommender.service import RecommenderService

        return RecommenderService(host, host.config.recommender)


class CatalogPlugin:
    name = "catalog"

    def attach(self, host: Any) -> object | None:
        if host.role != "sp":  # static recommendations always; co-purchase counts if configured
            return None
        from crm.recommender.catalog import CatalogService

        return CatalogService(host, host.config.copurchase)


RECOMMEND = ("crm.recommender.cli", "recommendations: the plaintext oracle (--plain) and co-purchase counts")
CATALOG = ("crm.recommender.catalog_cli", "the SP's catalogue: static recommendations, private co-purchase counts")
CHURN = ("crm.churn.cli", "churn: train a tree, score and plan retention actions")


class RecommenderSimulation:
    """``mpc-crm simulate --ratings FILE | --synthetic W1`` and ``--baskets FILE``."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        rec = parser.add_argument_group("private recommender (used when --ratings or --synthetic is given)")
        rec.add_argument("--ratings", help="ratings file: run the private recommender across the processes")
        rec.add_argument(
            "--synthetic", metavar="W1", help="a generated workload instead of --ratings (W1: SeComLib's setting)"
        )
        rec.add_argument("--targets", default="2", help="target users whose recommendations are fetched: N or all")
        rec.add_argument(
            "--threshold", help="delta: an integer, or a fraction of 2^(2*shift) such as 1/2 (default 1/2)"
        )
        rec.add_argument("--top-n", type=int, default=0, help="top-N mode with this N instead of a threshold")
        rec.add_argument(
            "--selection", choices=("shuffle", "rank"), default="shuffle",
            help="top-N: shuffle-then-select (default) or encrypted rank counting (leak-free, quadratic)",
        )
        rec.add_argument("--dense", type=int, default=20, help="dense items R (default 20)")
        rec.add_argument("--shift", type=int, default=8, help="scale of the dense vectors (default 8)")
        rec.add_argument("--scale", help="rating scale LO:HI (default: the file's smallest and largest rating)")
        rec.add_argument("--workers", type=int, default=2, help="processes sharing the users' uploads (default 2)")
        rec.add_argument(
            "--deadline", type=float, default=600.0, help="the servers' call deadline in seconds (default 600)"
        )
        rec.add_argument("--out", help="write the recommender (or co-purchase) report (JSON) to this file")
        rec.add_argument("--titles", help="items CSV with titles, for a readable summary")
        rec.add_argument(
            "--settle", type=float, default=0.0,
            help="seconds of idle time between uploads and fetches (precomputation)",
        )
        rec.add_argument(
            "--server-workers", type=int, default=2,
            help="crypto threads of each server (default 2, the config's default; 1 when both servers share two cores)",
        )
        rec.add_argument(
            "--gap", type=float, default=0.0,
            help="seconds of idle time between two targets' fetches (the servers refill their pools; default 0)",
        )
        rec.add_argument(
            "--precompute", action="store_true",
            help="the SP computes every user's recommendations in idle time; wait for all of them before fetching",
        )
        co = parser.add_argument_group(
            "private co-purchase counts (used when --baskets is given; also --workers, --out)"
        )
        co.add_argument("--baskets", help="baskets file, one a line and one customer each: private co-purchase counts")
        co.add_argument("--customers", default="300", help="customers: the first N baskets, or all (default 300)")
        co.add_argument("--product", action="append", default=[], help="product whose list is shown (repeatable)")
        co.add_argument("--k", type=int, default=5, help="recommendations shown per product (default 5)")

    @staticmethod
    def run(args: argparse.Namespace) -> int | None:
        if args.baskets:
            from crm.recommender.copurchase_simulate import run as run_copurchase

            if args.key_bits is None:
                args.key_bits = 1024
            return int(run_copurchase(args))
        if args.ratings or args.synthetic:
            from crm.recommender.simulate import run as run_recommender

            if args.key_bits is None:
                args.key_bits = 2048
            return int(run_recommender(args))
        return None
