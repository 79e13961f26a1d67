"""stratoecho.privacy with national_phones and national_ids: phone numbers in the national forms of
the supported languages' countries and their identity numbers, found whole, named by kind, kept
apart from the dates, times, amounts, altitudes, postcodes and versions of ordinary chat.

The valid identity numbers are specimens and worked examples that issuers and public validators
publish (docs/data.md names the sources), not numbers made with the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratoecho.national_ids import valid
from stratoecho.privacy import KINDS, PLACEHOLDER, PrivacyScrubber, contains_private, find_private


def found(text: str) -> list[tuple[str, str]]:
    return [(f.kind, f.value) for f in find_private(text)]


# -- phones in their national forms -----------------------------------------------------------

NATIONAL_PHONES = [
    "655 21 48 37",  # Spain: mobile, as the Spanish owner wrote hers
    "655214837",
    "655-21-48-37",
    "655.21.48.37",
    "912 345 678",  # Spain, Madrid, or a Portuguese mobile
    "91 234 56 78",
    "21 234 5678",  # Portugal, Lisbon
    "213 456 789",
    "333 123 4567",  # Italy: mobiles have no trunk 0
    "333 1234567",
    "3331234567",
    "(11) 98765-4321",  # Brazil: the DDD in parentheses
    "(11)98765-4321",
    "(21) 9 8765-4321",
    "(11) 3456-7890",
    "11 98765-4321",
    "21987654300",
    # the trunk-0 forms privacy.py took before, for the other countries
    "0171 2345678",  # Germany
    "030/1234567",
    "(030) 1234567",
    "0664 1234567",  # Austria
    "079 123 45 67",  # Switzerland
    "06 12 34 56 78",  # France
    "0470 12 34 56",  # Belgium
    "02 123 45 67",
    "06-12345678",  # Netherlands
    "020-1234567",
    "07700 900123",  # UK
    "087 123 4567",  # Ireland
    "(555) 010-2345",  # US, Canada
]


@pytest.mark.parametrize("value", NATIONAL_PHONES)
def test_national_phone_found_whole(value):
    assert found(f"llámame al {value} esta noche") == [("phone", value)]
    assert found(f"{value}") == [("phone", value)]


@pytest.mark.parametrize(
    "text",
    [
        "655.214.837",  # thousands as es, pt, it, de and nl write them, not a phone
        "912.345.678",
        "600 000 000",  # a round number is a sum
        "700000000",
        "912 345 678 €",  # an amount, with its currency after ...
        "912 345 678 euros",
        "655 214 837 reais",
        "€ 912 345 678",  # ... or before
        "R$ 912 345 678",
        "USD 912 345 678",
        "655 21-48.37",  # one kind of separator in a number
        "2024 655 21",  # groupings nobody dials: 4-3-2
        "90210-1234",  # a US ZIP+4, not a Brazilian local number without its DDD
        "(9) 98765-4321",  # a DDD has two digits, none of them 0
        "(10) 98765-4321",
        "11 98765 4321 55",  # no dash after a bare DDD
        "512 345 678",  # nine digits, but no country's plan starts a number with 5
    ],
)
def test_national_lookalikes_are_not_phones(text):
    assert [k for k, _ in found(f"dice {text} y ya") if k == "phone"] == []


def test_spanish_phone_next_to_a_date_and_a_year():
    assert found("el 12.03.2024 me dio el 655 21 48 37, en 2024") == [("phone", "655 21 48 37")]
    assert found("en 2024 655 21 48 37 era su número") == [("phone", "655 21 48 37")]


def test_national_and_international_forms_share_one_placeholder():
    scrubber = PrivacyScrubber()
    a, _ = scrubber.scrub("655 21 48 37")
    b, _ = scrubber.scrub("+34 655 21 48 37")
    c, _ = scrubber.scrub("0034655214837")
    assert a == b == c == "<PHONE_1>"


# Ordinary chat in each supported language: dates, times, amounts, altitudes, postcodes,
# versions, scores, coordinates. Nothing here is private.
ORDINARY = [
    "Quedamos el 12/03/2024 a las 21:14 en la calle Colón 23, 46004 Valencia.",
    "Me costó 1.250 € y pesa 2,5 kg; el piso sale por 655.214.837 €, dicen",
    "El presupuesto es de 912 345 678 € en total",
    "El globo subió a 34.000 m (111.549 pies) en 2 h 15 min",
    "Hay 600 000 000 de hablantes, y 47.385.107 en España",
    "Subimos 655 metros en 21 minutos, a -56,5 °C",
    "la versión 10.0.19041.1234 y Python 3.11.7",
    "entre 2019 2020 y 2021 hicimos 6 2 6 4 en tenis",
    "Treffen am 12.03.2024 um 21:14 in 10115 Berlin, kostet 1.234,56 €, Höhe 34.000 m",
    "Das Budget: 912.345.678 Euro, Einwohner 83.200.000",
    "Rendez-vous le 12/03/2024 à 21 h 14, 75011 Paris, ça coûte 1 234,56 €",
    "le ballon est monté à 34 000 m, et le budget est de 655 214 837 €",
    "Il 12/03/2024 alle 21:14, CAP 00184 Roma, costa 1.234,56 €, volo AZ 609",
    "Il pallone è salito a 34.000 metri, popolazione 58.850.717",
    "no dia 12/03/2024 às 21h14, código postal 1000-001 Lisboa, custa 1.234,56 €",
    "o balão subiu 34 000 m; população 10 343 066",
    "CEP 01310-100, São Paulo, R$ 1.234,56, em 2024, R$ 912 345 678",
    "op 12-03-2024 om 21:14, postcode 1012 AB Amsterdam, € 1.234,56, 2.500.000 inwoners",
    "on 03/12/2024 at 9:14 pm, ZIP 90210-1234, $1,234.56, 34,000 ft, flight BA 2490",
    "ISBN 978-3-16-148410-0, order of 2024-03-12, build 1.2.3-rc4",
    "timestamps 1710278040 and 1710278041",
    "lat 39.4699 lon -0.3763, alt 12345 m, 101325 Pa, 35 km/h",
    "aufgenommen 20240312 um 211405",
    "el 268 435 456 €",  # nine digits that pass the Portuguese NIF's check, as a sum (found by hypothesis)
    "R$ 268 435 456 no total",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_chat_keeps_its_numbers(text):
    assert found(text) == []


def _grouped(n: int, sep: str) -> str:
    return f"{n:,}".replace(",", sep)


_WORDS = st.sampled_from(["el", "la", "und", "à", "em", "op", "at", "a las", "kostet", "costa", "subió", "—", "ok"])
_DATES = st.builds(lambda d, m, y, sep: f"{d:02d}{sep}{m:02d}{sep}{y}", st.integers(1, 28), st.integers(1, 12),
                   st.integers(1990, 2030), st.sampled_from("./-"))
_TIMES = st.builds(lambda h, m, fmt: fmt.format(h, m), st.integers(0, 23), st.integers(0, 59),
                   st.sampled_from(["{}:{:02d}", "{}h{:02d}", "{} h {:02d}", "{}:{:02d}:05"]))
_AMOUNTS = st.builds(lambda n, sep, cur, before: f"{cur} {_grouped(n, sep)}" if before else f"{_grouped(n, sep)} {cur}",
                     st.integers(0, 999_999_999), st.sampled_from([".", " ", "\u00a0", "\u202f", ","]),
                     st.sampled_from(["€", "$", "£", "R$", "EUR", "CHF"]), st.booleans())
_ALTITUDES = st.builds(lambda n, sep, unit: f"{_grouped(n, sep)} {unit}", st.integers(0, 45_000),
                       st.sampled_from([".", " ", ",", ""]), st.sampled_from(["m", "ft", "pies", "metros", "Meter"]))
_POSTCODES = st.one_of(st.integers(1000, 99999).map(lambda n: f"{n:05d}"),  # es, de, fr, it, us
                       st.builds(lambda a, b: f"{a}-{b:03d}", st.integers(1000, 9999), st.integers(0, 999)),  # pt
                       st.builds(lambda a, b: f"{a:05d}-{b:03d}", st.integers(1000, 99999), st.integers(0, 999)),  # br
                       st.integers(1000, 9999).map(lambda n: f"{n} AB"))  # nl
_VERSIONS = st.builds(lambda a, b, c: f"v{a}.{b}.{c}", st.integers(0, 30), st.integers(0, 30), st.integers(0, 99))
_FIGURES = st.one_of(_DATES, _TIMES, _AMOUNTS, _ALTITUDES, _POSTCODES, _VERSIONS)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_WORDS, _FIGURES), min_size=1, max_size=6))
def test_figures_of_ordinary_chat_are_never_private(parts):
    text = " ".join(f"{w} {fig}" for w, fig in parts)
    assert find_private(text) == [], text


# -- national identity numbers ----------------------------------------------------------------

# (kind, value as written): published specimens and worked examples, in the forms people type.
# Their check digits agreeing with our rules is what says the rules are the issuers'.
IDS = [
    ("es_dni", "12345678Z"),  # the Ministerio del Interior's worked example
    ("es_dni", "54362315-K"),
    ("es_dni", "12.345.678-Z"),
    ("es_nie", "X1234567L"),
    ("es_nie", "Z-7662566-Y"),
    ("pt_nif", "123456789"),
    ("pt_nif", "123 456 789"),
    ("pt_cc", "15697354 5 ZZ1"),
    ("pt_cc", "10890919-7-ZY3"),
    ("br_cpf", "390.533.447-05"),
    ("br_cpf", "11144477735"),
    ("it_codice_fiscale", "RSSMRA85T10A562S"),
    ("it_codice_fiscale", "rccmnl83s18d969h"),
    ("fr_nir", "2 95 10 99 126 111 93"),
    ("fr_nir", "186022A21532523"),  # born in Corsica (2A)
    ("nl_bsn", "111222333"),
    ("nl_bsn", "1112.22.333"),
    ("de_steuer_id", "36574261809"),
    ("de_steuer_id", "12 345 678 995"),
    ("de_ausweis", "L01X00T471"),  # the specimen card's serial and check digit
    ("de_ausweis", "T220001293"),
    ("be_rrn", "85.07.30-033.28"),
    ("be_rrn", "93051822361"),
    ("be_rrn", "05073003326"),  # born after 1999: the key counts a 2 in front
    ("uk_nino", "AB 12 34 56 C"),
    ("uk_nino", "JG103786B"),
    ("us_ssn", "536-22-1234"),
]


@pytest.mark.parametrize(("kind", "value"), IDS)
def test_national_id_found_whole_under_its_own_kind(kind, value):
    assert found(f"mine is {value}, ok?") == [(kind, value)]
    assert found(f"{value}.") == [(kind, value)]


@pytest.mark.parametrize(("kind", "value"), IDS)
def test_national_id_placeholder_is_its_kind_and_ignores_spelling(kind, value):
    scrubber = PrivacyScrubber()
    again = value.replace(" ", "") if kind == "de_ausweis" else value.replace(" ", "").lower()  # printed in capitals
    text, counts = scrubber.scrub(f"id {value} and again {again}")
    holder = f"<{kind.upper()}_1>"
    assert PLACEHOLDER.fullmatch(holder) and counts == {kind: 2} and text == f"id {holder} and again {holder}"
    assert kind in KINDS and contains_private(value) == [kind]


# One mistyped digit never leaves a valid number of these kinds. Not of pt_nif and br_cpf, whose
# sums 0 and 10 (mod 11) both give the check digit 0, nor of uk_nino and us_ssn, which have none.
SINGLE_DIGIT_SAFE = [(k, v) for k, v in IDS if k not in ("pt_nif", "br_cpf", "uk_nino", "us_ssn")]


@pytest.mark.parametrize(("kind", "value"), SINGLE_DIGIT_SAFE)
def test_one_wrong_digit_is_no_id(kind, value):
    for i, c in enumerate(value):
        for d in "0123456789" if c.isdigit() else "":
            changed = value[:i] + d + value[i + 1 :]
            if d != c:
                assert not valid(kind, changed), changed
                assert kind not in contains_private(changed), changed


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("es_dni", "12345678A"),  # the wrong letter
        ("es_dni", "12345678 z"),  # spaced and in lower case: "12345678 y" is a sentence
        ("es_nie", "W1234567L"),  # W is no NIE prefix
        ("pt_nif", "501964843"),  # a company's NIF (first digit 5) is public, not personal
        ("pt_cc", "15697354 5 ZZ2"),
        ("br_cpf", "111.111.111-11"),  # passes the sums; no one has it
        ("it_codice_fiscale", "RSSMRA85T10A562T"),
        ("it_codice_fiscale", "RSSMRA85Z10A562S"),  # Z is no month letter
        ("fr_nir", "295109912611199"),
        ("fr_nir", "5 95 10 99 126 111 93"),  # 5 begins no NIR
        ("nl_bsn", "000000000"),
        ("de_steuer_id", "12345678903"),  # check digit right, but no digit repeats in the first ten
        ("de_steuer_id", "11123456786"),  # ... or one digit three times in a row
        ("de_ausweis", "LA1X00T471"),  # vowels are not in its alphabet
        ("de_ausweis", "L01X00T472"),
        ("be_rrn", "85133003370"),  # key right, but month 13
        ("uk_nino", "QQ 12 34 56 C"),  # HMRC's own example prefix: never issued
        ("uk_nino", "GB 12 34 56 C"),
        ("uk_nino", "DA 12 34 56 C"),  # D is never a prefix letter
        ("uk_nino", "AB 12 34 56 E"),  # suffixes are A to D
        ("us_ssn", "000-22-1234"),
        ("us_ssn", "666-22-1234"),
        ("us_ssn", "912-22-1234"),
        ("us_ssn", "536-00-1234"),
        ("us_ssn", "536-22-0000"),
    ],
)
def test_national_id_lookalikes_are_not_that_id(kind, value):
    assert kind not in contains_private(f"say {value} again")


def test_a_steuer_id_may_repeat_a_digit_three_times_apart():
    assert valid("de_steuer_id", "12131456787")


def test_a_bare_number_that_is_a_spanish_phone_and_passes_the_11_proef_is_the_phone():
    assert valid("nl_bsn", "655214835")
    assert found("mi móvil 655214835") == [("phone", "655214835")]
    assert found("BSN 123456782") == [("nl_bsn", "123456782")]  # no country dials a 1 first


def test_an_id_outranks_the_card_its_digits_also_pass():
    nir = "144048722477938"  # a valid NIR whose digits also pass the Luhn check of a card
    assert found(f"sécu {nir}") == [("fr_nir", nir)]


def test_the_spanish_owners_message_keeps_neither_her_phone_nor_her_dni():
    text, counts = PrivacyScrubber().scrub("sii, mi número es 655 21 48 37 y el DNI 12345678Z, pásaselo a Lucía")
    assert text == "sii, mi número es <PHONE_1> y el DNI <ES_DNI_1>, pásaselo a Lucía"
    assert counts == {"phone": 1, "es_dni": 1}


# -- prepare ----------------------------------------------------------------------------------


def test_prepare_counts_national_values_by_kind_and_writes_none(tmp_path):
    from host_training.__main__ import main

    chat = tmp_path / "WhatsApp Chat with Lucía.txt"
    chat.write_text(
        "12/03/2024, 21:14 - Lucía: hola! me pasas tu número?\n"
        "12/03/2024, 21:16 - Marta Soler: sii, es el 655 21 48 37 o el fijo 96 123 45 67\n"
        "12/03/2024, 21:17 - Lucía: y tu DNI para la reserva?\n"
        "12/03/2024, 21:18 - Marta Soler: 12345678Z jajaj, y el NIE de Tom es X1234567L\n"
        "12/03/2024, 21:20 - Lucía: perfecto, quedamos a las 21:30 el 14.03.2024, son 1.250 €\n"
        "12/03/2024, 21:21 - Marta Soler: vale, subo a los 2.300 m q me encanta\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert main(["--log-level", "WARNING", "prepare", str(chat), "--owner", "Marta Soler", "--out", str(out)]) == 0
    written = "\n".join(p.read_text(encoding="utf-8") for p in sorted(out.iterdir()) if p.is_file())
    for value in ("655 21 48 37", "96 123 45 67", "12345678Z", "X1234567L"):
        assert value not in written
    assert "21:30" in written and "14.03.2024" in written and "1.250 €" in written and "2.300 m" in written
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["pii_replaced"]["texts"] == {"phone": 2, "es_dni": 1, "es_nie": 1}


def test_docs_name_every_kind():
    data_md = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text(encoding="utf-8")
    missing = [kind for kind in KINDS if f"`{kind}`" not in data_md]
    assert missing == []


def test_a_sum_in_reais_is_no_dni_whose_letter_is_the_r_of_r_dollar():
    # 99999999 mod 23 is 1, whose letter is R: hypothesis found "99.999.999 R$" taken for a DNI.
    assert find_private("el 01000 el 99.999.999 R$") == []
    assert find_private("custou 12.345.678 Z$ e 99999999R$ e X1234567L$") == []
    assert [f.kind for f in find_private("mi DNI es 99.999.999 R.")] == ["es_dni"]
    assert [f.kind for f in find_private("NIE X 1234567 L")] == ["es_nie"]
