"""Storage URLs fit to print: a URL's password and the credentials in its query string masked, and a driver's
message scrubbed of them.  Light on purpose (SQLAlchemy only, imported when called): the command line's parser
shows the default storage without importing the results layer."""

from __future__ import annotations

import re

MASK = "***"
_SECRET_KEYS = {"password", "pass", "passwd", "pwd", "sslpassword", "passphrase"}
_SECRET_PARTS = ("password", "secret", "token")
_PLACEHOLDER = "LATENCYSOLVERMASKED"  # rendered as is, unlike "***", which a URL's query would percent-encode


def is_secret_key(key: str) -> bool:
    """A query-string key whose value is a credential (``password``, ``sslpassword``, ``api_token`` ...)."""
    key = key.lower()
    return key in _SECRET_KEYS or any(part in key for part in _SECRET_PARTS)


def shown_url(url: str) -> str:
    """``url`` fit to print: the password of its user part and every credential in its query string masked.

    A URL SQLAlchemy cannot parse is masked as text (``user:PW@`` and ``KEY=VALUE`` pairs of secret keys).
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return _mask_text(url)
    query = {key: (_PLACEHOLDER if is_secret_key(key) else value) for key, value in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True).replace(_PLACEHOLDER, MASK)


def _mask_text(url: str) -> str:
    url = re.sub(r"(://[^:/@?#]*:)[^@]*@", rf"\1{MASK}@", url)

    def pair(match: re.Match[str]) -> str:
        return f"{match[1]}{MASK}" if is_secret_key(match[2]) else match[0]

    return re.sub(r"([?&;]([^=&;#]*)=)([^&;#]*)", pair, url)


def secrets_of(url: str) -> list[str]:
    """The credentials ``url`` carries (user password, secret query values), for scrubbing messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return []
    found = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if is_secret_key(key):
            found += [value] if isinstance(value, str) else list(value)
    return [str(secret) for secret in found if secret]


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's error message, say) with every credential of ``url`` masked."""
    for secret in sorted(secrets_of(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
