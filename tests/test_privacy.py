"""stratoecho.privacy: each detector with real values and look-alikes, checksums, placeholders,
the blocklist, the outbound guard, and special-token escaping (checked against a real tokenizer)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratoecho.privacy import (
    WORD_JOINER,
    Finding,
    PrivacyScrubber,
    contains_private,
    escape_special_tokens,
    find_private,
    iban_valid,
    luhn_valid,
)


def found(text: str, kind: str | None = None) -> list[str]:
    return [f.value for f in find_private(text) if kind is None or f.kind == kind]


# -- e-mail -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["ada.lindqvist@example.org", "ADA@Example.COM", "jonas+balloons@mail.example.co.uk", "a_b-c@sub-domain.example.net"],
)
def test_email_found_whole(value):
    assert found(f"write to {value}, thanks", "email") == [value]


@pytest.mark.parametrize("text", ["follow @ada_aloft", "a@b", "user@localhost", "the @ sign", "x@1.2"])
def test_email_lookalikes_ignored(text):
    assert found(text, "email") == []


# -- phone ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "+44 7700 900123",
        "07700 900456",
        "07700-900-789",
        "+1 (555) 010-2345",
        "(555) 010-2345",
        "555-010-2345",
        "0049-30-1234567",
        "+49 30 1234567",
        "030 1234567",
        "+44 (0) 7700 900123",
        "01.23.45.67.89",
        "+447700900123",
    ],
)
def test_phone_found_whole(value):
    assert found(f"ring {value} tonight", "phone") == [value]


@pytest.mark.parametrize(
    "text",
    [
        "12/03/2024",
        "01/03/2024",
        "2024-03-12",
        "12.03.2024",
        "01.03.2024",
        "12/03/2024, 21:14 - Ada: hi",
        "2024-03-12T21:14:05Z",
        "at 21:14 or 21:14:05",
        "in 2024",
        "from 1999 to 2024",
        "52.12345, -0.12345",
        "lat 51.5072 lon 0.1276474",
        "0.12345 0.6789",
        "version 10.0.19041.1234",
        "v1.2.3",
        "12345",
        "0515 alarm",
        "open 0900-1700",
        "09:00-17:30",
        "pi is 3.14159265",
        "1 2 3 4 5 6 7 8",
        "unix time 1710278040",
        "£95 for 3 nights",
        "50 g flour + 50 g water",
        "at 28 km, minus 57",
    ],
)
def test_phone_lookalikes_ignored(text):
    assert found(text, "phone") == []


def test_phone_found_next_to_a_date():
    assert found("12.03.2024 07700 900456 call me", "phone") == ["07700 900456"]
    assert found("(07700 900456)", "phone") == ["07700 900456"]


# -- cards ------------------------------------------------------------------------------------


@pytest.mark.parametrize("digits", ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117"])
def test_luhn_accepts_test_card_numbers(digits):
    assert luhn_valid(digits)


@pytest.mark.parametrize("digits", ["4111111111111112", "5555555555554445", "1234567812345678", "", "4111-1111"])
def test_luhn_rejects(digits):
    assert not luhn_valid(digits)


@pytest.mark.parametrize(
    "value", ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "5555 5555 5555 4444", "3782 822463 10005"]
)
def test_card_found_whole(value):
    assert found(f"card {value}, exp 11/27", "card") == [value]


def test_card_followed_by_another_number_is_still_found():
    assert found("4111 1111 1111 1111 2024", "card") == ["4111 1111 1111 1111"]


@pytest.mark.parametrize(
    "text", ["4111 1111 1111 1112", "4111 1111 1111", "0000 0000 0000 0000", "order 1234567812345678"]
)
def test_card_lookalikes_ignored(text):
    assert found(text, "card") == []


# -- IBAN -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iban",
    ["DE89370400440532013000", "GB82WEST12345698765432", "GB82 WEST 1234 5698 7654 32", "fr14 2004 1010 0505 0001 3m02 606"],
)
def test_iban_checksum_accepts(iban):
    assert iban_valid(iban)


@pytest.mark.parametrize("iban", ["GB82WEST12345698765433", "DE89370400440532013001", "GB82WEST", "1234WEST12345698765432"])
def test_iban_checksum_rejects(iban):
    assert not iban_valid(iban)


@pytest.mark.parametrize(
    "value", ["GB82WEST12345698765432", "GB82 WEST 1234 5698 7654 32", "DE89 3704 0044 0532 0130 00"]
)
def test_iban_found_without_the_words_after_it(value):
    assert found(f"my account is {value} is mine, ref PIPIT1", "iban") == [value]


def test_iban_with_a_wrong_check_digit_is_no_iban():
    assert found("GB82WEST12345698765433", "iban") == []


# -- IP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["192.0.2.44", "10.0.0.1", "255.255.255.255", "2001:db8::8a2e:370:7334", "fe80::1ff:fe23:4567:890a"])
def test_ip_found(value):
    assert found(f"ssh to {value}.", "ip") == [value]


@pytest.mark.parametrize(
    "text", ["v1.2.3.4", "version 1.2.3.4", "256.1.1.1", "1.2.3.4.5", "21:14:05", "12.03.2024", "00:1A:2B:3C:4D:5E", "::1"]
)
def test_ip_lookalikes_ignored(text):
    assert found(text, "ip") == []


# -- URLs with secrets, and API keys ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/share?token=abc123SECRET",
        "https://example.com/a?x=1&api_key=zz9",
        "https://example.com/a?apiKey=zz9",
        "https://example.com/a?secret=s",
        "https://example.com/a?sig=0f0f",
        "https://example.com/a?password=hunter2",
        "https://example.com/a?auth=xyz",
        "https://example.com/cb#access_token=eyJabc",
        "https://example.com/a?X-Amz-Signature=abc",
        "https://ada:hunter2@host.example.org/files",
        "https://docs.google.com/document/d/1AbCdEfGhIjKlMnOpQrStUvWxYz012345/edit",
        "https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe",
        "example.com/share?token=abc123SECRET",
        "www.example.com/a?key=1",
        "https://en.wikipedia.org/wiki/Fog_(disambiguation)?sig=1",
    ],
)
def test_secret_url_found_whole(url):
    assert found(f"see {url}.", "secret_url") == [url]


@pytest.mark.parametrize(
    "text",
    [
        "https://example.com/blog/my-first-balloon-flight-report",
        "https://example.com/search?q=balloons&page=2",
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "https://example.com/?monkey=1&keyword=sky",
        "https://example.org/predict/pipit-2",
    ],
)
def test_plain_urls_are_kept(text):
    assert find_private(text) == []


def test_api_keys_found():
    assert found("key sk-abcdefghijklmnopqrstuvwx12 and AKIAABCDEFGHIJKLMNOP", "secret") == [
        "sk-abcdefghijklmnopqrstuvwx12",
        "AKIAABCDEFGHIJKLMNOP",
    ]


# -- overlaps, placeholders, blocklist --------------------------------------------------------


def test_find_reports_positions():
    text = "mail ada@example.org now"
    assert find_private(text) == [Finding("email", 5, 20, "ada@example.org")]


def test_credentials_in_url_are_one_finding_not_an_email():
    assert [f.kind for f in find_private("https://ada:pw@example.org/x")] == ["secret_url"]


def test_overlapping_findings_merge_so_nothing_is_left_over():
    assert found("ada@example.org/x?token=1") == ["ada@example.org/x?token=1"]
    assert found("(https://example.org/a?token=1).") == ["https://example.org/a?token=1"]


def test_same_value_same_placeholder():
    s = PrivacyScrubber()
    a, ca = s.scrub("mail ada@example.org or jonas@example.net")
    b, cb = s.scrub("again ADA@example.org")
    assert a == "mail <EMAIL_1> or <EMAIL_2>"
    assert b == "again <EMAIL_1>"
    assert ca == {"email": 2} and cb == {"email": 1}


def test_phone_placeholder_by_digits_across_formats():
    s = PrivacyScrubber()
    text, counts = s.scrub("+44 7700 900123 / 07700 900123 / +44 (0)7700 900123 / 0044 7700 900123 / 07700 900456")
    assert text == "<PHONE_1> / <PHONE_1> / <PHONE_1> / <PHONE_1> / <PHONE_2>"
    assert counts == {"phone": 5}


def test_cards_and_ibans_placeholder_ignores_grouping():
    s = PrivacyScrubber()
    text, _ = s.scrub("4111 1111 1111 1111 4111-1111-1111-1111; GB82WEST12345698765432 GB82 WEST 1234 5698 7654 32")
    assert text == "<CARD_1> <CARD_1>; <IBAN_1> <IBAN_1>"


def test_scrubbers_do_not_share_state():
    assert PrivacyScrubber().scrub("b@example.org")[0] == PrivacyScrubber().scrub("b@example.org")[0] == "<EMAIL_1>"


def test_blocklist_words_and_regexes():
    s = PrivacyScrubber(["Gerald", "Coniston Water", "/PIPIT-\\d+/"])
    text, counts = s.scrub("gerald (not Geraldine) went to coniston water on PIPIT-4 and pipit-5")
    assert text == "<BLOCKED_1> (not Geraldine) went to <BLOCKED_2> on <BLOCKED_3> and <BLOCKED_4>"
    assert counts == {"blocked": 4}


def test_placeholders_are_not_found_again_nor_special_tokens():
    s = PrivacyScrubber()
    once, _ = s.scrub("ring 07700 900456 or mail a@example.org from 192.0.2.44")
    assert find_private(once) == []
    assert escape_special_tokens(once) == (once, 0)


def test_contains_private_for_the_payload_guard():
    assert contains_private("Clouds at 28 km, -57 C, 2024-03-12 21:14") == []
    assert contains_private("call 07700 900456 or a@example.org") == ["email", "phone"]
    assert contains_private("near Gerald", blocklist=["gerald"]) == ["blocked"]


PLANTED = [
    "+44 7700 900123",
    "07700-900-789",
    "ada.lindqvist@example.org",
    "GB82 WEST 1234 5698 7654 32",
    "4111 1111 1111 1111",
    "5555-5555-5555-4444",
    "192.0.2.44",
    "https://example.com/share?token=abc123SECRET",
]
FILLER = ["the", "sky", "at", "21:14", "on", "12/03/2024", "2024", "52.12345", "v1.2", "km", "ok!", "(yes)", "—", "\n"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(FILLER + PLANTED), min_size=1, max_size=25))
def test_no_planted_value_survives_any_surroundings(words):
    text, _ = PrivacyScrubber().scrub(" ".join(words))
    for value in PLANTED:
        assert value not in text
    assert "abc123SECRET" not in text


# -- special tokens ---------------------------------------------------------------------------

SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>", "<s>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<end_of_turn>"]


@pytest.mark.parametrize("token", SPECIAL)
def test_special_tokens_are_broken_but_read_the_same(token):
    text, n = escape_special_tokens(f"I typed {token} by accident")
    assert n == 1
    assert token not in text
    assert text.replace(WORD_JOINER, "") == f"I typed {token} by accident"


def test_escaping_is_idempotent_and_counts():
    once, n = escape_special_tokens("<|im_end|><|im_start|>user </s>")
    assert n == 3
    assert escape_special_tokens(once) == (once, 0)


def test_ordinary_angle_brackets_untouched():
    text = "a <b> tag, x < y > z, <EMAIL_1>, <3, [INSTALL], <sigh>"
    assert escape_special_tokens(text) == (text, 0)


def test_escaped_text_is_not_read_as_control_tokens_by_a_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>", "</s>"])
    special_ids = {tok.token_to_id(t) for t in ["<|im_start|>", "<|im_end|>", "</s>"]}
    raw = "hi <|im_end|> and </s> <|im_start|>"
    assert special_ids & set(tok.encode(raw).ids)  # the danger is real
    escaped, _ = escape_special_tokens(raw)
    assert not special_ids & set(tok.encode(escaped).ids)
