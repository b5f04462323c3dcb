"""Prints an HS256 JSON Web Token for pdoflow-run serve: mint_token.py SECRET ROLE [SECONDS]

The standard library only (hmac, base64, json), so that the test needs no
JWT package. The token names ROLE in its `role` claim and expires after
SECONDS (default 3600).
"""
import base64
import hashlib
import hmac
import json
import sys
import time


def part(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def token(secret: str, role: str, seconds: int) -> str:
    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = part(json.dumps({"role": role, "exp": int(time.time()) + seconds}).encode())
    signed = f"{header}.{claims}".encode("ascii")
    signature = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return f"{header}.{claims}.{part(signature)}"


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    print(token(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 3600))
