"""Signed meter values: each reading sealed by the station's meter in an OCMF document.

The meter holds an ECDSA P-256 key (derived from the run's seed, so runs reproduce) and signs
the OCMF payload of a reading (Open Charge Metering Format: ``OCMF|{payload}|{signature}``).
Anyone with the public key, which the station sends beside the data, can check the reading.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["SIGNING_METHOD", "MeterSigner", "SignedReading"]

SIGNING_METHOD = "ECDSA-secp256r1-SHA256"


@dataclass(frozen=True, slots=True)
class SignedReading:
    ocmf: str
    """``OCMF|{payload}|{"SD": hex signature}``."""
    public_key: str
    """Base64 of the DER public key."""

    @property
    def base64(self) -> str:
        return base64.b64encode(self.ocmf.encode()).decode()


class MeterSigner:
    """The signing meter of one station."""

    def __init__(self, serial: str, rng: random.Random) -> None:
        order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        self._key = ec.derive_private_key(rng.randrange(1, order), ec.SECP256R1())
        self._serial = serial
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def sign(self, *, at: datetime, register_wh: float, id_tag: str, context: str) -> SignedReading:
        """Seal one register reading of a transaction."""
        payload = json.dumps(
            {
                "FV": "1.0",
                "GI": "SIMULATOR",
                "MS": self._serial,
                "IS": True,
                "ID": id_tag,
                "RD": [
                    {
                        "TM": at.strftime("%Y-%m-%dT%H:%M:%S,000+0000 S"),
                        "TX": context,
                        "RV": round(register_wh / 1000, 4),
                        "RI": "1-b:1.8.0",
                        "RU": "kWh",
                        "ST": "G",
                    }
                ],
            },
            separators=(",", ":"),
        )
        signature = self._key.sign(payload.encode(), ec.ECDSA(hashes.SHA256()))
        ocmf = f"OCMF|{payload}|" + json.dumps(
            {"SA": SIGNING_METHOD, "SD": signature.hex().upper()}
        )
        return SignedReading(ocmf, self.public_key)
