"""What upload proofs cost: a W1 user's recommender upload, before (encryption only) and after
(encryption and a proof per ciphertext), the SP's verification, and the two servers' upload
check of the dense values (masks, one partial decryption per dense ciphertext on each
server, the PSP's field check; the garbled comparisons, a few ms, are not included), measured
in one run.

    python scripts/bench_uploads.py --bits 2048 --users 5 --json build/bench_uploads.json

"Before" and "after" alternate user by user on the same plaintexts, so both see the same
machine load; compare their ratio, not the seconds across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from crm.recommender.data import synthetic_ratings
from crm.recommender.plain import PlainParams, Recommender
from crm.recommender.private import UserRecord, psp_check_values, sp_check
from crm.recommender.service import REC_KIND, RecParams, upload_plaintexts
from mpc.elgamal import combine_many, local_joint_keys, params_for
from mpc.elgamal.proofs import UploadContext, encrypt_proven, proof_bytes, verify_upload


def own(r: object, user: str) -> dict[str, int]:
    row = r.d[r.user_index[user]]  # type: ignore[attr-defined]
    return {r.items[i]: int(row[i]) - 1 + r.lo for i in range(len(r.items)) if row[i]}  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bits", type=int, default=2048, choices=(1024, 2048))
    ap.add_argument("--users", type=int, default=5, help="W1 users measured (default 5)")
    ap.add_argument("--top-n", type=int, default=20)
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args(argv)

    r = synthetic_ratings("W1")
    plain = PlainParams(dense=20, shift=8, top_n=a.top_n, k=0)  # as mpc-crm simulate
    oracle = Recommender(r, plain)
    params = RecParams.from_ratings(r, oracle.dense_items, 8, 0, a.bits, a.top_n)
    pk, shares = local_joint_keys(params_for(a.bits))
    pk.g_pow(1)  # tables built before anything is timed
    layout = params.layout(pk.params)
    before, after, verify, check = [], [], [], []
    for user in list(r.users)[: a.users]:
        plains = upload_plaintexts(params, layout, user, own(r, user))
        t = time.perf_counter()
        [pk.encrypt(m) for m in plains]
        before.append(time.perf_counter() - t)
        ctx = UploadContext(pk, user, REC_KIND, params.layout_version)
        t = time.perf_counter()
        cts, proofs = encrypt_proven(pk, plains, ctx.digest())
        after.append(time.perf_counter() - t)
        t = time.perf_counter()
        verify_upload(pk, cts, proofs, ctx)
        verify.append(time.perf_counter() - t)
        t = time.perf_counter()
        masked, _ = sp_check(layout, params.position(user), UserRecord.split(layout, cts))
        partials = [s.partial_decrypt_many(masked) for s in shares]
        if psp_check_values(layout, params.position(user), combine_many(masked, partials)) is None:
            raise SystemExit("an honest upload failed the check")
        check.append((time.perf_counter() - t) / 2)  # the partial decryptions: one share on each server
    n = layout.upload_count
    ct_bytes = n * pk.ciphertext_bytes
    res = {
        "bits": a.bits,
        "workload": "W1",
        "users_measured": a.users,
        "ciphertexts_per_upload": n,
        "user_encrypt_s": statistics.median(before),
        "user_encrypt_and_prove_s": statistics.median(after),
        "user_cost_ratio": statistics.median(x / y for x, y in zip(after, before, strict=True)),
        "sp_verify_s": statistics.median(verify),
        "check_per_server_s": statistics.median(check),
        "upload_bytes_before": ct_bytes,
        "upload_bytes_after": ct_bytes + n * proof_bytes(pk.params),
        "w1_all_users_user_side_s": {"before": statistics.median(before) * len(r.users),
                                     "after": statistics.median(after) * len(r.users)},
        "w1_all_users_sp_verify_s": statistics.median(verify) * len(r.users),
        "loadavg": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d"),
    }
    text = json.dumps(res, indent=1)
    print(text)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
