"""What a certificate directory holds, and the Secret that carries it: each name once.

ca.crt, ca.key          the CA the caBundle trusts (no ca.key when an
                        organisation's CA signs: --ca-cert/--ca-key)
tls.crt, tls.key        the serving certificate (the Secret's two keys)
ca-next.crt, ca-next.key   during a CA rotation: the CA rotated to
ca-bundle.crt           during a CA rotation: old and new CA, trusted both
"""

from __future__ import annotations

from webhook.engine import PRODUCT

CA_CERT, CA_KEY = "ca.crt", "ca.key"


NEXT_CERT, NEXT_KEY = "ca-next.crt", "ca-next.key"


BUNDLE = "ca-bundle.crt"


TLS_CERT, TLS_KEY = "tls.crt", "tls.key"


SECRET = f"{PRODUCT}-tls"


FILES = (CA_CERT, CA_KEY, NEXT_CERT, NEXT_KEY, BUNDLE, TLS_CERT, TLS_KEY)
