"""Secrets out of everything nerflow records or prints: MLflow params and tags, the resolved config, log lines, error
messages, the printed summary (docs/cli.md, "Secrets"). Pure functions; the edges that record or print call them.

What counts as a secret (the documented patterns):
- a value under a key (config key, environment variable, `key=value` / `key: value` in text, URL query parameter)
  whose name has one of the words of SECRET_WORDS, case-insensitive, as a whole word of the name (`HF_TOKEN`,
  `db.password`, `apiKey`; not `max_tokens` or `TOKENIZERS_PARALLELISM`);
- the password of a URI with credentials, `scheme://user:PASSWORD@host` (`scheme://user:***@host`), and the whole
  user part of `scheme://TOKEN@host`;
- `Bearer`/`Basic` credentials and PEM private-key blocks in text;
- the value of every environment variable of the first kind (and every URI password in the environment), wherever
  it appears in text, if it is at least MIN_VALUE_LENGTH characters long: shorter ones ("1", "true") would blank
  out ordinary words.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
# not `pwd`: $PWD is the working directory
SECRET_WORDS = ("token", "password", "passwd", "secret", "api_key", "apikey", "access_key", "private_key",
                "credential", "credentials", "auth", "authorization", "auth_string", "session_key", "signature")
MIN_VALUE_LENGTH = 8

# a whole word of a name: words are split at `_ . -`, spaces and camelCase humps (see _words)
_WORD = re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(w).replace("_", "[_.\\- ]?") for w in SECRET_WORDS)
                   + r")(?![a-z0-9])")
# the password may hold `@`: the last one before the host ends it
_URI_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]*://)([^\s/@:'\"]*)(?::([^\s/'\"]*))?@")
# an HTTP credential; a digit or one of `=+/` tells `Basic dXNlcjpwdw==` from the words "basic statistics"
_BEARER = re.compile(r"\b(Bearer\s+|Basic\s+(?=[A-Za-z0-9._~+/\-]*[0-9=+/]))[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE)
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL)
# `name=value`, `name: value`, `"name": "value"`, a query's `?name=value&`: the value up to a delimiter
# (only names with a secret word match: another name's value must not swallow `?token=...` after it)
_ANY_WORD = "|".join(SECRET_WORDS).replace("_", "[_.-]?")
_NAME = r"[A-Za-z0-9_.\-]"
_ASSIGNED = re.compile(rf"""(?<!{_NAME})(?P<name>{_NAME}*?(?:{_ANY_WORD}){_NAME}*)"""
                       r"""(?P<q>["']?)(?P<sep>\s*[=:]\s*)(?P<open>["']?)"""
                       r"""(?P<value>[^\s"'&,;}\]]*[^\s"'&,;}\]:.)])""",   # not a sentence's `:` or `.` after it
                       re.IGNORECASE)


def _words(name: str) -> str:
    """`accessToken` -> `access_token`, `HF_TOKEN` -> `hf_token`: camelCase humps become word breaks."""
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def is_secret_key(name: str) -> bool:
    """Whether a config key, environment variable or field name names a secret (the last dotted part counts
    most, but any part may: `db.password.file` is one)."""
    return bool(_WORD.search(_words(str(name))))


def env_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values of the environment: those of secret-named variables and the passwords of URIs with
    credentials, long enough to redact wherever they appear; longest first (one may contain another)."""
    environ = os.environ if environ is None else environ
    found = set()
    for name, value in environ.items():
        if is_secret_key(name) and len(value) >= MIN_VALUE_LENGTH:
            found.add(value)
        for match in _URI_USERINFO.finditer(value):
            secret = match.group(3) if match.group(3) is not None else match.group(2)
            if secret and len(secret) >= MIN_VALUE_LENGTH:
                found.add(secret)
    return sorted(found, key=len, reverse=True)


def _uri(match: re.Match) -> str:
    scheme, user, password = match.group(1), match.group(2), match.group(3)
    if password is None:   # `https://TOKEN@host`: a lone user part is how many services take a token
        return f"{scheme}{MASK}@" if user else match.group(0)
    return f"{scheme}{user}:{MASK}@"


def _assigned(match: re.Match) -> str:
    if not is_secret_key(match.group("name")) or match.group("value") == MASK:
        return match.group(0)
    if match.group("name").lower() == "token" and match.string[match.start() - 1:match.start()] not in ("?", "&"):
        # a bare `token` in text is a word of the data (a validation report's `"token": "Berlin"`); in a URL's
        # query (`?token=...`) it is a credential
        return match.group(0)
    return match.group(0)[:match.start("value") - match.start(0)] + MASK


def text(value: str, secrets: list[str] | None = None) -> str:
    """`value` with every secret the patterns find replaced by MASK. `secrets`: known secret values to replace
    wherever they are (default: the environment's, `env_secrets`)."""
    if not value:
        return value
    out = _PEM.sub(f"-----{MASK} PRIVATE KEY-----", value)
    for secret in env_secrets() if secrets is None else secrets:
        out = out.replace(secret, MASK)
    out = _URI_USERINFO.sub(_uri, out)
    out = _BEARER.sub(lambda m: f"{m.group(1).rstrip()} {MASK}", out)
    return _ASSIGNED.sub(_assigned, out)


def uri(value: str) -> str:
    """A URI to show as a link: without its user part at all (a browser asks for credentials itself)."""
    return _URI_USERINFO.sub(lambda m: m.group(1), value)


def value(key: str, item: Any, secrets: list[str] | None = None) -> Any:
    """A config or JSON value under `key`: MASK when the key names a secret, else its strings redacted."""
    secrets = env_secrets() if secrets is None else secrets
    if is_secret_key(key.rsplit(".", 1)[-1]) and item not in (None, "", [], {}):
        return MASK
    if isinstance(item, Mapping):
        return {k: value(str(k), v, secrets) for k, v in item.items()}
    if isinstance(item, (list, tuple)):
        return [value(key, v, secrets) for v in item]
    if isinstance(item, str):
        return text(item, secrets)
    return item


def mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """A config (`resolved_dict`), its flattened params or tags, redacted by key and by value."""
    secrets = env_secrets()
    return {k: value(str(k), v, secrets) for k, v in values.items()}


# one long word of base64/hex-like characters with letters and digits: a line of a key file, a token
_KEY_MATERIAL = re.compile(r"(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9+/=_\-]{32,}")


def excerpt(line: str, limit: int = 40, quote: bool = True) -> str:
    """What a data error may quote of an offending line (`data.train=~/.ssh/id_rsa` must not print the key): at
    most `limit` characters, non-printable ones escaped, quoted, with how many were left out; a secret the
    patterns find is masked first, and a line that is one long word of key-like characters is not quoted at all
    (the error names its file and line number)."""
    line = text(line.strip())
    if _KEY_MATERIAL.fullmatch(line):
        return f"(one {len(line)}-character word, not shown: it looks like key material)"
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line[:limit])
    more = f"... ({len(line) - limit} more characters)" if len(line) > limit else ""
    return f"'{shown}'{more}" if quote else shown + more


def log_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask the secrets of a log record in place: its message (arguments merged in) and its traceback's text,
    which every formatter then uses as is. A record whose arguments do not fit its message is left for the
    handler to report, as logging does."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - logging reports a bad format call itself, at the handler
        return record
    record.msg, record.args = text(message), ()
    if record.exc_info and not record.exc_text:
        record.exc_text = text(logging.Formatter().formatException(record.exc_info))
    return record


class LogFilter(logging.Filter):
    """A handler filter that masks every record the handler writes (the run's log file: docs/cli.md)."""

    def filter(self, record: logging.LogRecord) -> bool:
        log_record(record)
        return True
