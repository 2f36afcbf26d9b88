"""Signed meter values (``simulator.signing``): readings an outsider can check.

A reading is an OCMF document ``OCMF|{payload}|{signature}``; the ECDSA P-256 signature over the
payload verifies with the public key the station sends beside it (base64 DER, as any verifier
would load it, here with ``cryptography``), and fails once the payload is altered. The key is
derived from the run's seed: the same seed gives the same key.
"""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from simulator.signing import SIGNING_METHOD, MeterSigner, SignedReading

AT = datetime(2025, 3, 1, 12, 30, 5, tzinfo=UTC)


def _reading(signer: MeterSigner, register_wh: float = 1_234_567.8) -> SignedReading:
    return signer.sign(at=AT, register_wh=register_wh, id_tag="04E91C5A", context="Sample.Periodic")


def _parts(reading: SignedReading) -> tuple[str, dict[str, Any], dict[str, Any]]:
    header, payload, signature = reading.ocmf.split("|")
    return header, json.loads(payload), json.loads(signature)


def _verify(public_key_b64: str, payload: str, signature_hex: str) -> None:
    key = serialization.load_der_public_key(base64.b64decode(public_key_b64))
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP256R1)
    key.verify(bytes.fromhex(signature_hex), payload.encode(), ec.ECDSA(hashes.SHA256()))


def test_a_signed_reading_verifies_with_the_public_key() -> None:
    signer = MeterSigner("SIM0001", random.Random(7))
    reading = _reading(signer)
    header, payload_text, signature_text = reading.ocmf.split("|")
    signature = json.loads(signature_text)
    assert header == "OCMF"
    assert signature["SA"] == SIGNING_METHOD
    assert reading.public_key == signer.public_key
    _verify(reading.public_key, payload_text, signature["SD"])


def test_the_payload_says_what_was_read() -> None:
    _, payload, _ = _parts(_reading(MeterSigner("SIM0001", random.Random(7)), 1_234_567.8))
    assert payload["MS"] == "SIM0001"
    assert payload["ID"] == "04E91C5A"
    [read] = payload["RD"]
    assert read["RV"] == pytest.approx(1234.5678)
    assert read["RU"] == "kWh"
    assert read["TX"] == "Sample.Periodic"
    assert read["TM"].startswith("2025-03-01T12:30:05")


def test_an_altered_payload_does_not_verify() -> None:
    reading = _reading(MeterSigner("SIM0001", random.Random(7)))
    _, payload_text, signature_text = reading.ocmf.split("|")
    forged = payload_text.replace('"RV":1234.5678', '"RV":1.5678')
    assert forged != payload_text
    with pytest.raises(InvalidSignature):
        _verify(reading.public_key, forged, json.loads(signature_text)["SD"])


def test_another_meter_key_does_not_verify() -> None:
    reading = _reading(MeterSigner("SIM0001", random.Random(7)))
    other = MeterSigner("SIM0001", random.Random(8))
    _, payload_text, signature_text = reading.ocmf.split("|")
    with pytest.raises(InvalidSignature):
        _verify(other.public_key, payload_text, json.loads(signature_text)["SD"])


def test_the_same_seed_gives_the_same_key_and_another_seed_another() -> None:
    one = MeterSigner("SIM0001", random.Random("seed:SIM-00001"))
    again = MeterSigner("SIM0001", random.Random("seed:SIM-00001"))
    other = MeterSigner("SIM0001", random.Random("seed:SIM-00002"))
    assert one.public_key == again.public_key
    assert one.public_key != other.public_key
    # A reading of one verifies with the key of the other made from the same seed.
    reading = _reading(one)
    _, payload_text, signature_text = reading.ocmf.split("|")
    _verify(again.public_key, payload_text, json.loads(signature_text)["SD"])


def test_base64_form_is_the_ocmf_text() -> None:
    reading = _reading(MeterSigner("SIM0001", random.Random(1)))
    assert base64.b64decode(reading.base64).decode() == reading.ocmf
