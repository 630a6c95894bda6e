import time
async def test_smoke(parties):
    t=time.perf_counter()
    u = parties.user("alice")
    v = await u.upload("values", [3, 1, 4])
    print("upload", v, time.perf_counter()-t)
    print(await u.fetch("values"), await u.fetch("sum"), time.perf_counter()-t)
