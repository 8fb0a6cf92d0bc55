"""RFC 9421 signing: the RFC's own ed25519 vector, and the checks a sync server applies."""

import base64

import nacl.signing
import pytest

from sync import AuthError
from sync._httpsig import ReplayCache, component_values, sign_request, signature_base, signature_params, verify_request

# RFC 9421 appendix B.1.4 test-key-ed25519 (JWK d and x) and appendix B.2.6.
RFC_SEED = base64.urlsafe_b64decode("n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU=")
RFC_PUBLIC = base64.urlsafe_b64decode("JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs=")
RFC_HEADERS = {"Host": "example.com", "Date": "Tue, 20 Apr 2021 02:07:55 GMT", "Content-Type": "application/json",
               "Content-Length": "18"}
RFC_COMPONENTS = ("date", "@method", "@path", "@authority", "content-type", "content-length")
RFC_SIGNATURE = "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="


def test_signature_base_and_signature_match_rfc9421_b26():
    key = nacl.signing.SigningKey(RFC_SEED)
    assert key.verify_key.encode() == RFC_PUBLIC
    params = signature_params(RFC_COMPONENTS, {"created": 1618884473, "keyid": "test-key-ed25519"})
    values = component_values("POST", "https://example.com/foo?param=Value&Pet=dog", RFC_HEADERS)
    base = signature_base(RFC_COMPONENTS, values, params)
    assert base.decode().splitlines()[-1] == ('"@signature-params": ("date" "@method" "@path" "@authority" '
                                              '"content-type" "content-length");created=1618884473;'
                                              'keyid="test-key-ed25519"')
    assert base64.b64encode(key.sign(base).signature).decode() == RFC_SIGNATURE


def _signed(key, body=b'{"a":1}', url="http://127.0.0.1:9000/sync/v1/push", now=1_000_000):
    headers = sign_request(key, "POST", url, body, now=now)
    headers["Host"] = "127.0.0.1:9000"
    return headers


def test_round_trip_names_the_signer():
    key = nacl.signing.SigningKey.generate()
    headers = _signed(key)
    verified = verify_request("POST", "http://127.0.0.1:9000/sync/v1/push", headers, b'{"a":1}', now=1_000_010)
    assert verified.keyid == key.verify_key.encode().hex()


@pytest.mark.parametrize("change, message", [
    (lambda h, b, u: (h, b'{"a":2}', u), "Content-Digest does not match"),
    (lambda h, b, u: (h, b, u.replace("push", "pull")), "does not verify"),
    (lambda h, b, u: (h, b, u.replace("9000", "9001")), "does not verify"),
    (lambda h, b, u: ({k: v for k, v in h.items() if k != "Signature"}, b, u), "not signed"),
])
def test_tampering_is_refused(change, message):
    key = nacl.signing.SigningKey.generate()
    url = "http://127.0.0.1:9000/sync/v1/push"
    headers, body, url = change(_signed(key), b'{"a":1}', url)
    with pytest.raises(AuthError, match=message):
        verify_request("POST", url, headers, body, now=1_000_000)


def test_clock_skew_and_replay_are_refused():
    key = nacl.signing.SigningKey.generate()
    headers = _signed(key)
    with pytest.raises(AuthError, match="clock skew"):
        verify_request("POST", "http://127.0.0.1:9000/sync/v1/push", headers, b'{"a":1}', now=1_000_000 + 3600)
    cache = ReplayCache()
    verify_request("POST", "http://127.0.0.1:9000/sync/v1/push", headers, b'{"a":1}', now=1_000_000, replay=cache)
    with pytest.raises(AuthError, match="replay"):
        verify_request("POST", "http://127.0.0.1:9000/sync/v1/push", headers, b'{"a":1}', now=1_000_001,
                       replay=cache)
