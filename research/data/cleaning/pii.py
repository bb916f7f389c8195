"""PII scrubbing: e-mail addresses, IP addresses, phone numbers and secrets, each replaced by
a typed placeholder (<EMAIL>, <IP_ADDRESS>, <PHONE_NUMBER>, <SECRET>).

The detectors are regular expressions with checks, written for text that is often source
code, where much looks like an address and is not. The rules, in order of priority (a span
claimed by an earlier detector is not looked at again):

1. Private-key blocks (`-----BEGIN ... PRIVATE KEY-----` to the matching END line), then
   tokens with a fixed published shape: AWS access key ids (AKIA/ASIA + 16 upper-case
   letters or digits), GitHub tokens (ghp_/gho_/ghu_/ghs_/ghr_ + 36), Slack tokens (xox?-),
   Google API keys (AIza + 35), and the 40-character value assigned to an
   `aws_secret_access_key`. A value of 16+ characters quoted after a name ending in
   `api_key`, `secret`, `token` or `password` is replaced, the name kept.
2. E-mail: local@domain.tld where the top-level label is a common generic TLD or a two-letter
   country code. In code `a@b.T` is a matrix product and `x@self.weight.data` one too: a
   final label that is not a TLD ('T', 'data', 'shape') keeps them out.
3. IPv6: a run of hex digits and colons that `ipaddress` accepts and that has at least three
   colons: `1::2` is a valid address but far more often a slice (`x[1::2]`), and times
   (12:34:56) never parse.
4. IPv4 vs version strings. A dotted quad is an address when each of the four parts is a
   decimal 0..255 without a leading zero, AND
   - it stands alone: not preceded by a letter, digit, `_` or `.` (so `v1.2.3.4`,
     `x.1.2.3.4` and the tail of `1.3.6.1.4.1` are not) and not followed by `.digit`, a
     letter or a digit (so OIDs and five-part versions are not);
   - the line before it does not name a version: a match on a line whose text before it
     contains `version` (any case: `__version__ = '1.2.3.4'`, `Version: 1.2.3.4`), or the
     requirement operators `==`, `>=`, `<=`, `~=`, `!=` is a version, not an address.
   Loopback (127.0.0.0/8, ::1) and unspecified (0.0.0.0, ::) addresses identify no one
   and are kept (`keep_loopback`), which leaves `bind('127.0.0.1', ...)` in code intact.
5. Phone numbers: North American (`(555) 123-4567`, `555-123-4567`, `555.123.4567`,
   optionally `+1`) with the same `-` or `.` between the groups, and international numbers
   that start with `+country` and have 8 to 15 digits in groups of 1-4 (E.164 allows at
   most 15). Bare digit runs, space-separated numbers without a `+` (`211 486 761 1265`, a
   row of a table), dates (2023-01-15) and dotted versions never match.

`scrub(text)` returns the new text and the counts by type. Deterministic and linear in
the text (every pattern is anchored on a literal or a bounded class).
"""
from __future__ import annotations

import collections
import ipaddress
import re

import gin

PLACEHOLDERS = {'email': '<EMAIL>', 'ipv4': '<IP_ADDRESS>', 'ipv6': '<IP_ADDRESS>',
                'phone': '<PHONE_NUMBER>', 'private_key': '<SECRET>',
                'aws_access_key_id': '<SECRET>', 'aws_secret_access_key': '<SECRET>',
                'github_token': '<SECRET>', 'slack_token': '<SECRET>',
                'google_api_key': '<SECRET>', 'generic_secret': '<SECRET>'}
TYPES = tuple(PLACEHOLDERS)

_PRIVATE_KEY = re.compile(
    r'-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY((?: BLOCK)?)-----.*?-----END \1PRIVATE KEY\2-----',
    re.S)
_TOKENS = (
    ('aws_access_key_id', re.compile(r'(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])')),
    ('github_token', re.compile(r'(?<!\w)gh[pousr]_[A-Za-z0-9]{36}(?!\w)')),
    ('slack_token', re.compile(r'(?<!\w)xox[abprs]-[A-Za-z0-9-]{10,72}(?![\w-])')),
    ('google_api_key', re.compile(r'(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])')),
)
# The value only (group 1) is replaced; the name stays so the code still reads.
_AWS_SECRET = re.compile(r'aws_secret_access_key\W{0,4}?\s*[:=]\s*["\']?'
                         r'([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])', re.I)
_GENERIC_SECRET = re.compile(r'(?:api[_-]?key|secret|token|passw(?:or)?d)["\']?\s*[:=]\s*'
                             r'["\']([^"\'\s]{16,200})["\']', re.I)

# Common generic TLDs; any two-letter label is taken as a country code.
_GENERIC_TLDS = frozenset((
    'com', 'org', 'net', 'edu', 'gov', 'mil', 'int', 'info', 'biz', 'name', 'pro', 'io',
    'dev', 'app', 'ai', 'co', 'me', 'tv', 'xyz', 'online', 'site', 'tech', 'cloud', 'email',
    'mail', 'museum', 'aero', 'coop', 'jobs', 'mobi', 'travel', 'local', 'example', 'test',
    'invalid', 'localhost'))
_EMAIL = re.compile(r'(?<![\w.%+-])([A-Za-z0-9][A-Za-z0-9._%+-]{0,63})@'
                    r'((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))'
                    r'(?![\w-])')

_IPV6_CANDIDATE = re.compile(r'(?<![\w:.])[0-9A-Fa-f:]*:[0-9A-Fa-f:]*(?:\d+\.\d+\.\d+\.\d+)?'
                             r'(?![\w:])')
_OCTET = r'(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)'
_IPV4 = re.compile(rf'(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d|\w)')
_VERSION_CONTEXT = re.compile(r'version|==|>=|<=|~=|!=', re.I)

_NANP = re.compile(r'(?<![\w+.-])(?<!\d )(?:\+?1[ .-]?)?(?:\(\d{3}\) ?|\d{3}([.-]))\d{3}'
                   r'(?(1)\1|[ .-])\d{4}(?![\w.-]?\d)')
_INTERNATIONAL = re.compile(r'(?<![\w+])\+\d{1,3}(?:[ .-]\(?\d{1,6}\)?){2,6}(?![\w.-]?\d)')


def _is_email(m: re.Match) -> bool:
  tld = m.group(3).lower()
  return tld in _GENERIC_TLDS or (len(tld) == 2 and tld.isalpha())


def _is_ipv6(text: str, keep_loopback: bool) -> bool:
  if text.count(':') < 3:
    return False
  try:
    address = ipaddress.IPv6Address(text)
  except ValueError:
    return False
  return not (keep_loopback and (address.is_loopback or address.is_unspecified))


def _is_ipv4(text: str, line_start: str, keep_loopback: bool) -> bool:
  if _VERSION_CONTEXT.search(line_start):
    return False
  address = ipaddress.IPv4Address(text)
  return not (keep_loopback and (address.is_loopback or address.is_unspecified))


def _spans(text: str, keep_loopback: bool):
  """(start, end, type) of every PII span, by detector priority, overlaps dropped."""
  claimed: list[tuple[int, int, str]] = []

  def free(s, e):
    return all(e <= a or s >= b for a, b, _ in claimed)

  def claim(s, e, kind):
    if s < e and free(s, e):
      claimed.append((s, e, kind))

  for m in _PRIVATE_KEY.finditer(text):
    claim(m.start(), m.end(), 'private_key')
  for kind, pattern in _TOKENS:
    for m in pattern.finditer(text):
      claim(m.start(), m.end(), kind)
  for m in _AWS_SECRET.finditer(text):
    claim(m.start(1), m.end(1), 'aws_secret_access_key')
  for m in _GENERIC_SECRET.finditer(text):
    claim(m.start(1), m.end(1), 'generic_secret')
  for m in _EMAIL.finditer(text):
    if _is_email(m):
      claim(m.start(), m.end(), 'email')
  if ':' in text:
    for m in _IPV6_CANDIDATE.finditer(text):
      if _is_ipv6(m.group(), keep_loopback):
        claim(m.start(), m.end(), 'ipv6')
  for m in _IPV4.finditer(text):
    line_start = text[text.rfind('\n', 0, m.start()) + 1:m.start()]
    if _is_ipv4(m.group(), line_start, keep_loopback):
      claim(m.start(), m.end(), 'ipv4')
  for pattern in (_NANP, _INTERNATIONAL):
    for m in pattern.finditer(text):
      digits = sum(c.isdigit() for c in m.group())
      if 10 <= digits <= 15 or (pattern is _INTERNATIONAL and 8 <= digits <= 15):
        claim(m.start(), m.end(), 'phone')
  return sorted(claimed)


@gin.configurable('pii')
def scrub(text: str, keep_loopback: bool = True) -> tuple[str, collections.Counter]:
  """(text with every PII span replaced by its placeholder, counts by type)."""
  counts = collections.Counter()
  out, last = [], 0
  for start, end, kind in _spans(text, keep_loopback):
    out.append(text[last:start])
    out.append(PLACEHOLDERS[kind])
    counts[kind] += 1
    last = end
  out.append(text[last:])
  return ''.join(out), counts
