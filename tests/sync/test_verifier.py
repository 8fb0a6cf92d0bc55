"""The signature checker: large batches in a worker process, with the same verdicts as in a thread."""

import nacl.signing

from sync._verifier import PROCESS_THRESHOLD, Verifier, verify_batch


def _items(n, bad=()):
    key = nacl.signing.SigningKey.generate()
    other = nacl.signing.SigningKey.generate()
    items = []
    for i in range(n):
        message = b"nnode-event-v1:" + str(i).encode()
        signer = other if i in bad else key
        items.append((key.verify_key.encode(), signer.sign(message).signature + message))
    return items


async def test_worker_process_gives_the_thread_verdicts():
    items = _items(PROCESS_THRESHOLD + 10, bad={3, PROCESS_THRESHOLD + 5})
    verifier = Verifier()
    try:
        verdicts = await verifier.verify(items)
        assert verifier._proc is not None and verifier._proc.returncode is None  # it went to the process
        assert verdicts == verify_batch(items)
        assert [i for i, ok in enumerate(verdicts) if not ok] == [3, PROCESS_THRESHOLD + 5]
        assert await verifier.verify(_items(3, bad={1})) == [True, False, True]   # small: thread
    finally:
        await verifier.close()
        await verifier.close()


async def test_a_dead_worker_is_replaced():
    verifier = Verifier()
    try:
        items = _items(PROCESS_THRESHOLD, bad={0})
        await verifier.verify(items)
        verifier._proc.kill()
        await verifier._proc.wait()
        assert (await verifier.verify(items))[:2] == [False, True]   # falls back, then a new worker
        assert (await verifier.verify(items))[:2] == [False, True]
        assert verifier._proc.returncode is None
    finally:
        await verifier.close()
