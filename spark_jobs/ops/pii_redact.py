"""``pii_redact``: emails, phone numbers, IPs, Luhn-valid card numbers, IBANs -> placeholders."""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from include.registry import Op, StepContext, apply_defaults, register_op
from spark_jobs import rowwise

KINDS = ("email", "phone", "ip_address", "credit_card", "iban")

_EMAIL = re.compile(r"(?<![\w.+-])[\w.%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PREFIX = re.compile(r"/(\d{1,3})(?!\d)")
# Ranges that name no one's host: "this network" (RFC 1122; also where
# hostmasks such as 0.0.0.255 fall) and the documentation ranges.
_NO_HOST_NETS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32",
    "3fff::/20"))
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_PHONE_HINT = re.compile(r"\d[\d\s().\-/]{5,}\d")
_SAFE_CUT = re.compile(r"[^\d\s()+.\-/]\s+")
# Issuer prefixes (Visa, Mastercard, Amex, Discover/UnionPay, JCB, Diners): Luhn
# alone passes one random digit string in ten.
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6)")


def _emails(text):
    return [(m.start(), m.end()) for m in _EMAIL.finditer(text)]


def _ips(text):
    spans = []
    for rx in (_IPV4, _IPV6):
        for m in rx.finditer(text):
            if _identifies_host(m.group(), _PREFIX.match(text, m.end())):
                spans.append((m.start(), m.end()))
    return spans


def _identifies_host(s: str, prefix: re.Match | None) -> bool:
    """Whether ``s`` is an address that can point at someone's machine.

    Slices in code (``a[::-1]``, ``x[1::2]``) are valid compressed IPv6
    addresses, so an IPv6 address must spell out at least three of its
    groups (``2001:db8::1`` does; ``::``, ``::1``, ``1::2`` do not). Addresses
    that name no host are left alone: the unspecified, loopback, multicast
    and reserved ranges (netmasks such as 255.255.255.0 fall in the last),
    0.0.0.0/8 (hostmasks), the documentation ranges (RFC 5737, 3849, 9637)
    that manuals and doctests use, and a network in CIDR notation
    (``10.0.0.0/8``; ``10.1.2.3/8`` is a host and stays PII).
    """
    if ":" in s and sum(1 for g in s.split(":") if g) < 3:
        return False
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return False
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_reserved \
            or any(ip in net for net in _NO_HOST_NETS if net.version == ip.version):
        return False
    if prefix is not None:
        try:
            net = ipaddress.ip_network(f"{s}/{prefix.group(1)}", strict=True)
        except ValueError:
            return True  # host bits set: a host written with its subnet
        return net.num_addresses == 1
    return True


def _cards(text):
    from stdnum import luhn

    spans = []
    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn.is_valid(digits):
            spans.append((m.start(), m.end()))
    return spans


def _ibans(text):
    from stdnum import iban

    return [(m.start(), m.end()) for m in _IBAN.finditer(text) if iban.is_valid(m.group())]


def _phones(text, region, chunk=20000):
    import phonenumbers

    if not _PHONE_HINT.search(text):
        return []
    # The matcher gives up after 65 535 candidates per call, so long documents
    # go through in chunks, cut at whitespace after a character no phone
    # number contains (a space alone may sit inside "+1 415 555 2671").
    spans, start = [], 0
    while start < len(text):
        end = min(len(text), start + chunk)
        if end < len(text):
            last = None
            for last in _SAFE_CUT.finditer(text, max(start + 1, end - 2000), end):
                pass
            end = last.end() if last else end
        part = text[start:end]
        if _PHONE_HINT.search(part):
            spans += [(start + m.start, start + m.end) for m in phonenumbers.PhoneNumberMatcher(
                part, region, leniency=phonenumbers.Leniency.VALID)]
        start = end
    return spans


def _add_disjoint(found: list[tuple[int, int, str]], spans, kind: str) -> None:
    """Insert spans that overlap nothing already found; ``found`` stays sorted."""
    import bisect

    for s, e in spans:
        i = bisect.bisect_left(found, (s, e, kind))
        if i > 0 and found[i - 1][1] > s:
            continue
        if i < len(found) and found[i][0] < e:
            continue
        found.insert(i, (s, e, kind))


class _PiiRow:
    def __init__(self, params: dict[str, Any]):
        self.kinds = [k for k in KINDS if k in set(params["kinds"])]
        self.region = params["phone_region"]
        self.placeholder = params["placeholder"]

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        found: list[tuple[int, int, str]] = []
        # Structured numbers before phones: a card or IBAN must not be half
        # eaten by the phone matcher.
        for kind in ("iban", "credit_card", "email", "ip_address", "phone"):
            if kind not in self.kinds:
                continue
            hits = {"email": _emails, "ip_address": _ips, "credit_card": _cards,
                    "iban": _ibans}.get(kind)
            _add_disjoint(found, hits(text) if hits else _phones(text, self.region), kind)
        return found

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        text = row["text"]
        if not text:
            return {}
        spans = self.spans(text)
        if not spans:
            return {}
        parts, pos, counts = [], 0, {}
        for s, e, kind in spans:
            parts.append(text[pos:s])
            parts.append(self.placeholder.replace("{KIND}", kind.upper()))
            counts[kind] = counts.get(kind, 0) + 1
            pos = e
        parts.append(text[pos:])
        return {"text": "".join(parts), "_changed": "pii_redact", "_detail": counts}


@register_op(
    name="pii_redact", version="2", category="rewrite", engine="spark", rowwise=True,
    tunables=("kinds", "phone_region"),
    description="""Replaces personal data with placeholders such as <EMAIL>: email addresses,
    phone numbers (libphonenumber's matcher, numbers valid for their region; national formats
    of phone_region), IPv4/IPv6 addresses of hosts (validated; not loopback, documentation
    or reserved ranges, CIDR networks or code slices such as a[::-1]), credit-card numbers
    (issuer prefix and Luhn checked) and IBANs (mod-97 checked). Changed documents record
    the count per kind.""",
    params={"type": "object", "properties": {
        "kinds": {"type": "array", "maxItems": len(KINDS),
                  "items": {"type": "string", "enum": list(KINDS)},
                  "default": list(KINDS), "description": "which kinds of PII to redact"},
        "phone_region": {"type": "string", "default": "US", "pattern": "^[A-Z]{2}$",
                         "maxLength": 2,
                         "description": "ISO 3166 region for numbers written without +country"},
        "placeholder": {"type": "string", "default": "<{KIND}>",
                        "description": "replacement; {KIND} becomes EMAIL, PHONE, ..."},
    }},
    requires=("text",), adds=())
class PiiRedact(Op):
    def run(self, df, params: dict[str, Any], ctx: StepContext):
        params = apply_defaults(self.meta, params)
        return rowwise.map_rows(df, _PiiRow(params), op="pii_redact", reads=("text",),
                                writes={"text": "string"})
