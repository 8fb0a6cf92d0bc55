"""A worker process that checks ed25519 signatures, fed over its stdin and answering on its stdout.

Run as a file (not through the package) so it imports nothing but PyNaCl. Frames:
request  = count:u32, then per item: public key (32 bytes), length:u32, signature + message
response = count bytes, 1 where the signature verifies, 0 where it does not.
"""

import struct
import sys
from typing import BinaryIO

import nacl.bindings
import nacl.exceptions


def check(public: bytes, signed: bytes) -> bool:
    """True if `signed` (signature + message) verifies under `public`."""
    try:
        nacl.bindings.crypto_sign_open(signed, public)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Answer frames until stdin closes."""
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        (count,) = struct.unpack(">I", head)
        out = bytearray()
        for _ in range(count):
            public = stdin.read(32)
            (length,) = struct.unpack(">I", stdin.read(4))
            out.append(check(public, stdin.read(length)))
        stdout.write(bytes(out))
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
