"""PII scrubbing: every planted address, number and key goes, look-alikes in code stay."""
import os
import re

import pytest

from research.data.cleaning import pii

FIXTURE = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'cleaning')

# Everything planted in pii_planted.txt, by type: none may survive scrubbing.
PLANTED = {
    'email': ['jane.doe@example.com', 'j_smith+lists@mail.example.co.uk',
              'security-team@corp-mail.io', 'billing@shop.de'],
    'ipv4': ['192.168.10.24', '203.0.113.77', '10.0.0.5', '8.8.8.8', '1.1.1.1'],
    'ipv6': ['2001:db8:85a3::8a2e:370:7334', 'fe80::1ff:fe23:4567:890a',
             '2001:0db8:0000:0000:0000:ff00:0042:8329'],
    'phone': ['(555) 123-4567', '555-987-6543', '1-800-555-0199', '+1 415 555 2671',
              '+33 1 42 68 53 00', '+44 20 7946 0958', '+49 30 901820'],
    'aws_access_key_id': ['AKIAIOSFODNN7EXAMPLE'],
    'aws_secret_access_key': ['wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'],
    'github_token': ['ghp_abcdefghijklmnopqrstuvwxyz0123456789'],
    'slack_token': ['xoxb-1234567890-abcdefghijkl'],
    'google_api_key': ['AIzaSyA1234567890abcdefghijklmnopqrstuv'],
    'generic_secret': ['sk_live_4eC39HqLyjWDarjtT1zdp7dc', 'correct-horse-battery-staple'],
    'private_key': ['MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi4K8yJw4mQ2yqWq1B5kA9n7cM3',
                    'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAABlwAAAAdzc2gtcn'],
}


def _read(name):
  with open(os.path.join(FIXTURE, name), encoding='utf-8') as f:
    return f.read()


def test_every_planted_item_is_scrubbed_and_counted_by_type():
  text = _read('pii_planted.txt')
  for items in PLANTED.values():
    for item in items:
      assert item in text, item  # the fixture holds what the test says it does
  scrubbed, counts = pii.scrub(text)
  missed = [item for items in PLANTED.values() for item in items if item in scrubbed]
  assert not missed
  assert dict(counts) == {kind: len(items) for kind, items in PLANTED.items()}
  # No digit run of an address or a number is left; the names around secrets are.
  assert 'aws_secret_access_key = <SECRET>' in scrubbed
  assert 'api_key = "<SECRET>"' in scrubbed
  assert '-----BEGIN' not in scrubbed
  assert scrubbed.count('<EMAIL>') == 4 and scrubbed.count('<PHONE_NUMBER>') == 7
  assert scrubbed.count('<IP_ADDRESS>') == 8


def test_lookalikes_in_code_are_left_alone():
  text = _read('pii_lookalikes.py')
  scrubbed, counts = pii.scrub(text)
  assert scrubbed == text, [l for l in scrubbed.splitlines() if '<' in l and '>' in l]
  assert not counts


@pytest.mark.parametrize('text, expected', [
    # A dotted quad is a version on a line naming one, an address elsewhere.
    ("__version__ = '1.2.3.4'", "__version__ = '1.2.3.4'"),
    ("host = '1.2.3.4'", "host = '<IP_ADDRESS>'"),
    ('pkg>=1.2.3.4', 'pkg>=1.2.3.4'),
    ('Version: 4.3.2.1', 'Version: 4.3.2.1'),
    # Parts above 255 or with a leading zero are not an address.
    ('build 1.2.300.4', 'build 1.2.300.4'),
    ('build 01.02.03.04', 'build 01.02.03.04'),
    # Sentence punctuation after an address does not hide it; a fifth part does.
    ('ping 10.1.2.3.', 'ping <IP_ADDRESS>.'),
    ('oid 10.1.2.3.4', 'oid 10.1.2.3.4'),
    ('ping 127.0.0.1', 'ping 127.0.0.1'),
    ('see user@localhost', 'see user@localhost'),
    ('mail admin@example.org.', 'mail <EMAIL>.'),
])
def test_the_ip_and_version_rule(text, expected):
  assert pii.scrub(text)[0] == expected


def test_loopback_is_scrubbed_when_asked():
  assert pii.scrub("bind('127.0.0.1')", keep_loopback=False)[0] == "bind('<IP_ADDRESS>')"


def test_placeholders_are_typed():
  assert set(pii.PLACEHOLDERS.values()) == {'<EMAIL>', '<IP_ADDRESS>', '<PHONE_NUMBER>',
                                            '<SECRET>'}
  for placeholder in set(pii.PLACEHOLDERS.values()):  # scrubbing is idempotent
    assert pii.scrub(f'x {placeholder} y')[0] == f'x {placeholder} y'
  assert re.fullmatch(r'<[A-Z_]+>', pii.PLACEHOLDERS['email'])
