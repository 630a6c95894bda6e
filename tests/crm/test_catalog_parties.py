"""The SP's catalogue on live servers: private co-purchase counts and the static table.

The SP and the PSP run in this event loop (conftest's ``Parties``) with 1024-bit
keys, co-purchase parameters (``copurchase.json``) and an admin. Customers
encrypt their own baskets and upload them; the admin publishes; the published
counts must equal ``crm.recommender.copurchase.cooccurrence`` exactly.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
from conftest import Parties

from crm.recommender.catalog import (
    KIND,
    CatalogClient,
    CopurchaseParams,
    parse_static_table,
)
from crm.recommender.copurchase import cooccurrence
from crm.recommender.errors import DataError
from crm.recommender.private_copurchase import contribution, upload_plaintexts
from mpc.elgamal.proofs import proof_bytes
from mpc.errors import AuthorizationError, MpcError, ParameterError, ProtocolError
from mpc.parties.deploy import write_deployment

KEY_BITS = 1024
PRODUCTS = tuple(f"p{k:02d}" for k in range(25))
CUSTOMERS = tuple(f"c{k:02d}" for k in range(1, 15))  # the layout counts 14
ADMIN, MALLORY = "admin", "mallory"
DEADLINE_S = 60.0


def baskets(seed: int, n: int = len(CUSTOMERS)) -> dict[str, tuple[str, ...]]:
    rng = random.Random(seed)
    return {c: tuple(rng.sample(PRODUCTS, rng.randint(1, 6))) for c in CUSTOMERS[:n]}


@pytest_asyncio.fixture
async def shop(tmp_path: Path) -> AsyncIterator[Parties]:
    params = CopurchaseParams(PRODUCTS, customers=len(CUSTOMERS), min_changes=2)
    path = tmp_path / "copurchase.json"
    params.save(path)
    dep = write_deployment(
        tmp_path / "dep", [*CUSTOMERS, ADMIN, MALLORY], key_bits=KEY_BITS, deadline_s=DEADLINE_S,
        copurchase=path, admins=[ADMIN],
    )
    async with Parties(dep) as p:
        await p.start()
        yield p


def catalog(p: Parties, name: str) -> CatalogClient:
    return CatalogClient(p.user(name, deadline_s=DEADLINE_S))


async def contribute(p: Parties, bought: dict[str, tuple[str, ...]]) -> None:
    await asyncio.gather(*(catalog(p, c).contribute([b]) for c, b in bought.items()))


def same(a, b) -> None:
    assert a.items == b.items and a.baskets == b.baskets
    assert np.array_equal(a.matrix, b.matrix)


def status(info: pytest.ExceptionInfo) -> grpc.StatusCode:
    return info.value.status  # type: ignore[attr-defined]


async def test_published_counts_equal_the_plaintext_and_reuploads_replace(shop: Parties) -> None:
    p = shop
    bought = baskets(seed=3, n=12)
    await contribute(p, bought)
    # A customer changes its mind before the publication: its new upload replaces the old one.
    bought["c03"] = ("p00", "p01", "p24")
    assert await catalog(p, "c03").contribute([bought["c03"]]) == 2
    assert len(p.sp.store.users(KIND)) == 12
    assert p.psp.store.users(KIND) == []  # the PSP never sees an upload

    admin = catalog(p, ADMIN)
    with pytest.raises(MpcError) as info:
        await admin.copurchase(["p00"])
    assert status(info) == grpc.StatusCode.NOT_FOUND  # nothing published yet
    with pytest.raises(AuthorizationError):
        await catalog(p, MALLORY).publish()

    reply = await admin.publish()
    assert (reply.epoch, reply.contributors, reply.baskets, reply.changed) == (1, 12, 12, 12)
    plain = cooccurrence(list(bought.values()), PRODUCTS)
    got, meta = await catalog(p, "c07").cooccurrence()  # any customer reads the public counts
    same(got, plain)
    assert meta.contributors == 12 and meta.epoch == 1
    lists = await catalog(p, MALLORY).copurchase(PRODUCTS, k=3)
    for product, entry in zip(PRODUCTS, lists.products, strict=True):
        assert entry.baskets_with == plain.support(product)
        assert [(r.item, r.count) for r in entry.recommendations] == plain.recommend_for(product, 3)
    with pytest.raises(ParameterError, match="unknown product"):
        await admin.copurchase(["p99"])

    # Publishing again needs min_changes (2) new or replaced uploads: one is refused.
    bought["c05"] = ("p10", "p11")
    await catalog(p, "c05").contribute([bought["c05"]])
    with pytest.raises(ProtocolError, match="only 1 customer"):
        await admin.publish()
    bought["c13"] = ("p10", "p11", "p12")  # a new customer
    await catalog(p, "c13").contribute([bought["c13"]])
    reply = await admin.publish()
    assert (reply.epoch, reply.contributors, reply.changed) == (2, 13, 2)
    same((await admin.cooccurrence())[0], cooccurrence(list(bought.values()), PRODUCTS))

    # The publication is in the SP's store: served as it is after a restart.
    await p.close_clients()
    await p.restart()
    got, meta = await catalog(p, "c01").cooccurrence()
    assert meta.epoch == 2
    same(got, cooccurrence(list(bought.values()), PRODUCTS))


async def test_wrong_contributions_are_refused_and_nothing_changes(shop: Parties) -> None:
    p = shop
    client = catalog(p, "c01")
    pk = await client.user.public_key()
    lay = await client.layout(pk)
    assert lay.items == PRODUCTS and lay.customers == len(CUSTOMERS)
    await client.contribute([("p01", "p02")])
    before = p.sp.store.fingerprint()
    plains = upload_plaintexts(pk, contribution(("p03",), lay), lay)

    # Properly proven uploads that the handler refuses (the proofs hold for what they say) ...
    for values, version, words in ((plains, lay.version ^ 1, "layout version"), (plains[:-1], lay.version, "ciphertexts")):
        with pytest.raises(MpcError, match=words) as info:
            await client.user.upload(KIND, values, version, pk=pk)
        assert status(info) == grpc.StatusCode.INVALID_ARGUMENT
    # ... and elements outside the group, refused before any proof is looked at.
    with pytest.raises(MpcError, match="outside") as info:
        width = lay.ciphertexts * pk.ciphertext_bytes
        await client.user.upload_proven(KIND, b"\0" * width, bytes(lay.ciphertexts * proof_bytes(pk.params)), lay.ciphertexts, lay.version)
    assert status(info) == grpc.StatusCode.INVALID_ARGUMENT
    assert p.sp.store.fingerprint() == before
    assert p.sp.plugins["catalog"].stats["refused"] == 2  # the third never reached the handler

    # The layout counts 14 customers: a 15th (here the admin) is refused, the others may re-upload.
    await contribute(p, {c: ("p05",) for c in CUSTOMERS[1:]})
    full = p.sp.store.fingerprint()
    with pytest.raises(MpcError, match="at most 14 customers") as info:
        await catalog(p, ADMIN).contribute([("p05",)])
    assert status(info) == grpc.StatusCode.INVALID_ARGUMENT
    assert p.sp.store.fingerprint() == full
    assert await client.contribute([("p07",)]) == 2


async def test_the_psp_refuses_to_decrypt_a_sum_of_few_customers(shop: Parties) -> None:
    p = shop
    await contribute(p, baskets(seed=8, n=9))
    with pytest.raises(ProtocolError, match="at least 10"):
        await catalog(p, ADMIN).publish()
    assert p.sp.plugins["catalog"].published() is None
    with pytest.raises(MpcError) as info:
        await catalog(p, "c01").copurchase(["p01"])
    assert status(info) == grpc.StatusCode.NOT_FOUND


# -- static recommendations -----------------------------------------------------------------------
TABLE = """product,recommended,rank
whole milk,butter,2
whole milk,yogurt,1
"bread, white",jam,1
"""


async def test_static_table_round_trip_and_admin_only(shop: Parties) -> None:
    p = shop
    admin, reader = catalog(p, ADMIN), catalog(p, "c01")
    assert await reader.static("whole milk") == (0, [])  # no table yet
    reply = await admin.set_static_table(TABLE, "table.csv")
    assert (reply.version, reply.products, reply.entries) == (1, 2, 3)
    assert await reader.static("whole milk") == (1, [(1, "yogurt"), (2, "butter")])
    assert await reader.static("bread, white") == (1, [(1, "jam")])
    assert await reader.static("caviar") == (1, [])

    # Not an admin: refused, the table is unchanged.
    for who in ("c01", MALLORY):
        with pytest.raises(AuthorizationError, match="only the SP's admins") as info:
            await catalog(p, who).set_static_table("a,b,1\n")
        assert status(info) == grpc.StatusCode.PERMISSION_DENIED
    # Malformed: refused naming the line, the table is unchanged.
    with pytest.raises(ParameterError, match=r"table.csv: line 3, column 3 \(rank\)") as info:
        await admin.set_static_table("a,b,1\na,c,2\na,d,first\n", "table.csv")
    assert status(info) == grpc.StatusCode.INVALID_ARGUMENT
    assert await reader.static("whole milk") == (1, [(1, "yogurt"), (2, "butter")])
    assert await reader.static("a") == (1, [])

    # A new table replaces the whole old one.
    assert (await admin.set_static_table("a,b,1\n")).version == 2
    assert await reader.static("whole milk") == (2, [])
    assert await reader.static("a") == (2, [(1, "b")])
    await p.close_clients()
    await p.restart("sp")
    assert await catalog(p, "c02").static("a") == (2, [(1, "b")])


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a,b\n", "line 1: expected 3 columns"),
        ("a,b,1\n\na,c,2,x\n", "line 3: expected 3 columns"),
        ("a,b,1\n,c,2\n", r"line 2, column 1 \(product\): missing"),
        ("a, ,1\n", r"line 1, column 2 \(recommended\): missing"),
        ("a,b,0\n", r"line 1, column 3 \(rank\): '0' is not a rank"),
        ("a,b,-1\n", r"column 3 \(rank\)"),
        ("a,b,1.0\n", r"column 3 \(rank\)"),
        ("a,b,1\na,a,2\n", r"line 2, column 2 \(recommended\): a product cannot recommend itself"),
        ("a,b,1\nx,y,1\na,c,1\n", r"line 3, column 3 \(rank\): rank 1 of 'a' is also on line 1"),
        ("a,b,1\na,b,2\n", r"line 2, column 2 \(recommended\): 'b' is already recommended for 'a' on line 1"),
        ("a,\"b,1\n", "line 1: not valid CSV"),
        ("a,b\x07,1\n", "control character"),
        ("a," + "b" * 201 + ",1\n", "longer than 200"),
        ("product,recommended,rank\n\n", "no entries"),
        ("a,b,1\nproduct,recommended,rank\n", r"line 2, column 3 \(rank\)"),  # a header on line 1 only
    ],
)
def test_malformed_static_tables_name_the_line(text: str, where: str) -> None:
    with pytest.raises(DataError, match=where):
        parse_static_table(text, "t.csv")


def test_static_table_format() -> None:
    text = "\ufeffProduct,Recommended,Rank\r\n whole milk , butter , 3\r\n\r\n\"a, b\",c,1\n"
    assert parse_static_table(text) == [("whole milk", 3, "butter"), ("a, b", 1, "c")]


async def test_catalog_commands(shop: Parties, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``mpc-crm catalog``: contribute, publish, read, and the static table, as a user would."""
    import argparse
    import json

    from crm.recommender import catalog_cli
    from mpc.parties.user import UserConfig

    parser = argparse.ArgumentParser()
    catalog_cli.add_arguments(parser)

    async def cli(user: str, *argv: str) -> str:
        args = parser.parse_args(["--config", str(shop.dep.user_configs[user]), *argv])
        assert await catalog_cli._run(UserConfig.load(args.config), args) == 0
        return capsys.readouterr().out

    bought = baskets(seed=5, n=10)
    for c, b in bought.items():
        assert "uploaded an encrypted contribution" in await cli(c, "contribute", "--basket", ",".join(b))
    assert "at most 14 customers x 1 basket(s)" in await cli("c01", "layout")
    with pytest.raises(MpcError, match="counts at most 1 per customer"):  # this layout counts one basket a customer
        await cli("c01", "contribute", "--basket", "p01", "--basket", "p02")
    with pytest.raises(AuthorizationError):
        await cli("c01", "publish")
    assert "published epoch 1: 10 contributors, 10 baskets" in await cli(ADMIN, "publish")
    plain = cooccurrence(list(bought.values()), PRODUCTS)
    x = max(PRODUCTS, key=plain.support)
    out = await cli("c04", "copurchase", "--product", x, "--k", "2", "--out", str(tmp_path / "c.json"))
    top = plain.recommend_for(x, 2)
    assert f"{x}: in {plain.support(x)} baskets" in out and f"  1. {top[0][0]}" in out
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["matrix"] == plain.matrix.tolist() and doc["baskets"] == 10

    table = tmp_path / "table.csv"
    table.write_text(TABLE)
    assert "static table version 1: 3 entries for 2 products" in await cli(ADMIN, "set-static", "--csv", str(table))
    out = await cli("c05", "static", "--product", "whole milk", "--product", "tea")
    assert "whole milk: 1. yogurt, 2. butter" in out and "tea: (none)" in out
    table.write_bytes(b"a,b\xff,1\n")
    with pytest.raises(ParameterError, match="not UTF-8"):
        await cli(ADMIN, "set-static", "--csv", str(table))


async def test_an_sp_without_copurchase_parameters(parties: Parties) -> None:
    """Without ``copurchase`` in its config the SP still serves the static table; co-purchase calls fail clearly."""
    cat = CatalogClient(parties.user("alice"))
    with pytest.raises(ProtocolError, match="no co-purchase counts configured") as info:
        await cat.layout()
    assert status(info) == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(AuthorizationError):  # no admins unless the config names them
        await cat.publish()
    with pytest.raises(AuthorizationError):
        await cat.set_static_table("a,b,1\n")
    assert await cat.static("a") == (0, [])
