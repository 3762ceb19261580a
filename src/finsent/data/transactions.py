"""Transaction categorization: the merchant keyword rules, category names, and a seeded synthetic bank statement.

``categorize`` applies ``KEYWORDS`` (the longest keyword found in the description wins; nothing found is ``other``).
The ``rules`` teacher and the ``rules`` baseline share it. ``generate_transactions`` writes bank-statement lines the
way banks print them: card and POS prefixes (``SQ *``, ``TST*``, ``POS DEBIT``, ``CHECKCARD 0115``), store numbers,
cities, marketplace references (``AMZN Mktp US*2K3LX``), P2P transfers with names, card and account numbers,
currencies and signs, and refunds (which keep the merchant's category). It is synthetic: never report results on it
as results on real statements. Category ids are ``finsent.tasks.TRANSACTION_CATEGORIES``.

>>> categorize("SQ *STARBUCKS #1234 SEATTLE WA 6.50").label
'food_dining'
>>> categorize("UBER *EATS 23.10").label, categorize("UBER *TRIP 14.20").label
('food_dining', 'transport')
"""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from finsent.config import SourceConfig
from finsent.data.readers import Example, RowErrors, example_id, local_file, table_rows
from finsent.errors import ConfigError, DataError
from finsent.tasks import TRANSACTION_CATEGORIES

CATEGORY_IDS: tuple[str, ...] = tuple(c.id for c in TRANSACTION_CATEGORIES)
CATEGORY_NAMES: dict[str, str] = {c.id: c.name for c in TRANSACTION_CATEGORIES}
FALLBACK = "other"

# Merchant and keyword rules, written from general knowledge of bank statements (US, UK, EU, global chains); not
# fitted to any test file. Matched on whole words after ``normalize_description``; the longest match wins, so
# "UBER EATS" beats "UBER" and "ATM FEE" beats "ATM".
KEYWORDS: dict[str, tuple[str, ...]] = {
    "food_dining": (
        "STARBUCKS", "MCDONALD", "MCDONALDS", "BURGER KING", "KFC", "SUBWAY", "CHIPOTLE", "DOMINO", "DOMINOS",
        "PIZZA HUT", "PIZZA", "TACO BELL", "WENDYS", "DUNKIN", "PRET A MANGER", "COSTA COFFEE", "NANDOS", "GREGGS",
        "PANERA", "SHAKE SHACK", "FIVE GUYS", "CHICK FIL A", "POPEYES", "TIM HORTONS", "DOORDASH", "UBER EATS",
        "GRUBHUB", "DELIVEROO", "JUST EAT", "POSTMATES", "TST", "CAFE", "COFFEE", "RESTAURANT", "GRILL", "DINER",
        "BISTRO", "SUSHI", "BURGER", "BAKERY", "PUB", "BAR", "TAVERN", "KITCHEN", "EATS", "FOOD", "MEAL", "LUNCH",
        "DINNER", "BREAKFAST", "TAKEAWAY", "DINING",
    ),
    "groceries": (
        "WHOLE FOODS", "WHOLEFDS", "TRADER JOE", "KROGER", "SAFEWAY", "ALDI", "LIDL", "TESCO", "SAINSBURY",
        "SAINSBURYS", "ASDA", "MORRISONS", "WAITROSE", "CARREFOUR", "REWE", "EDEKA", "PUBLIX", "WEGMANS", "COSTCO",
        "SPROUTS", "FOOD LION", "HEB", "INSTACART", "AMAZON FRESH", "WALMART GROCERY", "SUPERMARKET", "GROCERY",
        "GROCERIES", "ALBERT HEIJN", "MERCADONA",
    ),
    "transport": (
        "UBER", "LYFT", "BOLT", "TAXI", "CAB", "SHELL", "CHEVRON", "EXXON", "EXXONMOBIL", "MOBIL", "BP", "TEXACO",
        "SUNOCO", "VALERO", "CITGO", "ESSO", "ARCO", "SPEEDWAY", "PETROL", "PETROLEUM", "FUEL", "DIESEL",
        "GAS STATION", "PARKING", "PARKMOBILE", "TOLL", "E ZPASS", "TFL", "MTA", "METRO", "TRANSIT", "BART",
        "CLIPPER", "OYSTER", "JIFFY LUBE", "CAR WASH", "AUTOZONE",
    ),
    "shopping": (
        "AMAZON", "AMZN", "AMZN MKTP", "TARGET", "WALMART", "WAL MART", "WM SUPERCENTER", "EBAY", "ETSY",
        "BEST BUY", "IKEA", "HOME DEPOT", "LOWES", "MACYS", "NORDSTROM", "ZARA", "H M", "UNIQLO", "NIKE", "ADIDAS",
        "APPLE STORE", "DECATHLON", "PRIMARK", "ARGOS", "JOHN LEWIS", "SEPHORA", "ALIEXPRESS", "SHEIN", "TEMU",
        "ZALANDO", "TJ MAXX", "GAP", "OLD NAVY", "KOHLS", "WAYFAIR",
    ),
    "bills_utilities": (
        "ELECTRIC", "ELECTRICITY", "WATER BILL", "GAS BILL", "PHONE BILL", "MOBILE BILL", "UTILITY", "UTILITIES",
        "COMCAST", "XFINITY", "VERIZON", "AT T", "T MOBILE", "SPECTRUM", "VODAFONE", "BRITISH GAS", "THAMES WATER",
        "EDF", "PG E", "CON ED", "DUKE ENERGY", "ENERGY", "INSURANCE", "GEICO", "STATE FARM", "PROGRESSIVE",
        "ALLSTATE", "RENT", "MORTGAGE", "INTERNET", "BROADBAND", "RECHARGE", "COUNCIL TAX",
    ),
    "entertainment": (
        "NETFLIX", "SPOTIFY", "HULU", "DISNEY PLUS", "HBO", "PRIME VIDEO", "YOUTUBE PREMIUM", "APPLE MUSIC",
        "STEAM", "STEAMGAMES", "PLAYSTATION", "XBOX", "NINTENDO", "TICKETMASTER", "LIVE NATION", "EVENTBRITE",
        "AMC", "REGAL", "CINEMA", "CINEWORLD", "ODEON", "MOVIE", "THEATRE", "THEATER", "CONCERT", "TWITCH",
        "AUDIBLE",
    ),
    "health": (
        "CVS", "WALGREENS", "RITE AID", "BOOTS", "PHARMACY", "CHEMIST", "DRUGSTORE", "HOSPITAL", "CLINIC",
        "MEDICAL", "DENTAL", "DENTIST", "DOCTOR", "LABCORP", "QUEST DIAGNOSTICS", "KAISER", "OPTICIAN",
        "SPECSAVERS", "GYM", "FITNESS", "PLANET FITNESS", "PELOTON", "HEALTH", "HEALTHCARE",
    ),
    "travel": (
        "DELTA AIR", "UNITED AIRLINES", "AMERICAN AIRLINES", "SOUTHWEST", "BRITISH AIRWAYS", "RYANAIR", "EASYJET",
        "LUFTHANSA", "AIR FRANCE", "AIR CANADA", "KLM", "EMIRATES", "AIRLINES", "AIRWAYS", "AIRLINE", "EXPEDIA",
        "BOOKING COM", "AIRBNB", "HOTELS COM", "MARRIOTT", "HILTON", "HYATT", "HOLIDAY INN", "HOTEL", "AMTRAK",
        "EUROSTAR", "TRAINLINE", "GREYHOUND", "HERTZ", "AVIS", "SIXT", "KAYAK", "FLIGHT",
    ),
    "income": (
        "PAYROLL", "SALARY", "DIRECT DEP", "DIRECT DEPOSIT", "DIR DEP", "INTEREST EARNED", "INTEREST PAYMENT",
        "INTEREST PAID", "DIVIDEND", "TAX REFUND", "TAX REF", "IRS TREAS", "HMRC", "PENSION", "SSA TREAS",
        "DEPOSIT",
    ),
    "transfers": (
        "ZELLE", "VENMO", "CASH APP", "TRANSFER", "XFER", "WIRE", "ONLINE TRANSFER", "INTERNAL TRANSFER",
        "PAYMENT THANK YOU", "AUTOPAY", "CREDIT CARD PAYMENT", "CRD AUTOPAY", "E TRANSFER", "REVOLUT",
    ),
    "fees": (
        "FEE", "FEES", "OVERDRAFT", "NSF", "SERVICE CHARGE", "MAINTENANCE CHARGE", "INTEREST CHARGE",
        "FINANCE CHARGE", "LATE FEE", "ANNUAL FEE", "ATM FEE", "FOREIGN TRANSACTION FEE", "WIRE TRANSFER FEE",
        "COMMISSION",
    ),
    "other": (
        "ATM", "ATM WITHDRAWAL", "CASH WITHDRAWAL", "WITHDRAWAL", "CHECK", "CHEQUE", "DONATION", "CHARITY",
        "RED CROSS", "UNICEF", "GOFUNDME", "TUITION", "COURSERA", "UDEMY", "EDX", "SCHOOL", "UNIVERSITY", "DMV",
        "USPS", "POST OFFICE", "MISC",
    ),
}  # fmt: skip

_NON_WORD = re.compile(r"[^A-Z0-9]+")


def normalize_description(text: str) -> str:
    """Return the form keywords match against: upper case, runs of other characters as one space."""
    return _NON_WORD.sub(" ", text.upper()).strip()


def _keyword_index(keywords: Mapping[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    pairs = [(normalize_description(k), category) for category, words in keywords.items() for k in words]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


_INDEX = _keyword_index(KEYWORDS)


@dataclass(frozen=True)
class RuleMatch:
    """The category the rules give a description, and the keyword that decided it (None: no keyword matched)."""

    label: str
    keyword: str | None


def categorize(text: str) -> RuleMatch:
    """Return the category of the longest ``KEYWORDS`` entry found in ``text`` as whole words, else ``other``."""
    padded = f" {normalize_description(text)} "
    for keyword, category in _INDEX:
        if f" {keyword} " in padded:
            return RuleMatch(category, keyword)
    return RuleMatch(FALLBACK, None)


def _category_lookup() -> dict[str, str]:
    names = {}
    for c in TRANSACTION_CATEGORIES:
        for name in (c.id, c.name, *c.synonyms):
            names[" ".join(normalize_description(name).split())] = c.id
    return names


_LOOKUP = _category_lookup()


def normalize_category(raw: object, label_map: Mapping[str, str] | None = None) -> str | None:
    """Return the category id of ``raw`` (an id, a display name or a synonym, any case), or None.

    With ``label_map`` (raw -> id, case-insensitive keys), it is consulted first.
    """
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    key = normalize_description(str(raw))
    if label_map:
        mapped = {normalize_description(k): v for k, v in label_map.items()}.get(key)
        if mapped is not None:
            return mapped
    return _LOOKUP.get(key)


# --- the synthetic generator --------------------------------------------------------------------------------------

# Merchants as banks print them, per category. Most chains are in KEYWORDS; the independent businesses often are
# not (a trattoria, a taqueria), so the rules are not perfect on this data and a model has something to learn.
_MERCHANTS: dict[str, tuple[str, ...]] = {
    "food_dining": (
        "STARBUCKS", "STARBUCKS STORE 08841", "MCDONALD'S F12345", "BURGER KING #4410", "CHIPOTLE 1187",
        "DOMINO'S 6021", "PIZZA HUT 031145", "TACO BELL #30210", "DUNKIN #350917", "PRET A MANGER", "NANDOS",
        "SHAKE SHACK", "FIVE GUYS 0491", "PANERA BREAD #6014", "DOORDASH*PANDA EXPRESS", "UBER *EATS",
        "GRUBHUB*THAIBASIL", "DELIVEROO", "JOE'S DINER", "BLUE BOTTLE COFFEE", "LA TAQUERIA", "TRATTORIA ROMANA",
        "GOLDEN DRAGON", "THE RUSTY ANCHOR PUB", "SAKURA SUSHI", "NOODLE HOUSE", "EL FAROLITO", "BAGEL BOYS",
        "CAFE LUNA", "OAK & ASH KITCHEN",
    ),
    "groceries": (
        "WHOLE FOODS MKT 10234", "WHOLEFDS SEA 10105", "TRADER JOE'S #552", "KROGER #0631", "SAFEWAY #1496",
        "ALDI 72034", "LIDL GB LONDON", "TESCO STORES 3021", "SAINSBURYS S/MKTS", "ASDA SUPERSTORE", "WAITROSE 0712",
        "CARREFOUR MARKET", "REWE MARKT", "PUBLIX #1205", "COSTCO WHSE #0113", "INSTACART", "AMAZON FRESH",
        "SPROUTS FARMERS MAR", "H-E-B #512", "FOOD LION #2231", "FRESH THYME", "ROCHE BROS", "PATEL BROTHERS",
        "H MART", "CO-OP FOOD",
    ),
    "transport": (
        "UBER *TRIP", "UBER TRIP HELP.UBER.COM", "LYFT *RIDE", "BOLT.EU/O/2401", "SHELL OIL 57444", "CHEVRON 0209",
        "EXXONMOBIL 4471", "BP#9632", "SUNOCO 0363", "VALERO 1234", "ESSO NORTH ROAD", "SPEEDWAY 06452",
        "PARKMOBILE", "CITY OF SEATTLE PARKING", "E-ZPASS REPLENISH", "TFL TRAVEL CH", "MTA*NYCT PAYGO", "BART",
        "CLIPPER SERVICE", "JIFFY LUBE #1711", "YELLOW CAB", "CURB TAXI", "WAWA 8112 FUEL", "QT 0721 OUTSIDE",
    ),
    "shopping": (
        "AMZN Mktp US*{ref}", "AMAZON.COM*{ref} AMZN.COM/BILL", "Amazon.co.uk*{ref}", "TARGET 00012345",
        "WAL-MART #1425", "EBAY O*{ref}", "ETSY.COM", "BEST BUY 00006547", "IKEA SEATTLE", "THE HOME DEPOT #4701",
        "LOWE'S #1055", "MACY'S", "NORDSTROM #0441", "ZARA USA", "H&M", "UNIQLO", "NIKE.COM", "APPLE STORE R102",
        "DECATHLON", "PRIMARK", "ARGOS", "SEPHORA", "ALIEXPRESS", "SHEIN", "TEMU.COM", "TJ MAXX #1121",
        "URBAN OUTFITTERS", "REI #11", "MUJI",
    ),
    "bills_utilities": (
        "COMCAST CABLE COMM", "XFINITY MOBILE", "VERIZON WIRELESS PAYMENTS", "AT&T*BILL PAYMENT", "T-MOBILE",
        "SPECTRUM", "PG&E WEB ONLINE", "CON ED OF NY", "DUKE ENERGY", "SEATTLE CITY LIGHT", "BRITISH GAS",
        "THAMES WATER", "EDF ENERGY", "OCTOPUS ENERGY", "GEICO *AUTO", "STATE FARM INSURANCE", "PROGRESSIVE INS",
        "RENT PAYMENT", "COUNCIL TAX", "VODAFONE", "SONIC BROADBAND", "PUGET SOUND ENERGY",
    ),
    "entertainment": (
        "NETFLIX.COM", "SPOTIFY USA", "HULU 877-8244858", "DISNEY PLUS", "HBO MAX", "PRIME VIDEO", "YOUTUBE PREMIUM",
        "APPLE MUSIC", "STEAMGAMES.COM", "PLAYSTATION NETWORK", "XBOX", "NINTENDO", "TICKETMASTER",
        "LIVE NATION", "EVENTBRITE", "AMC 1234 ONLINE", "REGAL CINEMAS", "ODEON CINEMAS", "CINEWORLD",
        "TWITCH", "AUDIBLE", "BOWLERO", "TOPGOLF",
    ),
    "health": (
        "CVS/PHARMACY #2341", "WALGREENS #1234", "RITE AID 0522", "BOOTS 1142", "LLOYDS PHARMACY",
        "KAISER PERMANENTE", "LABCORP", "QUEST DIAGNOSTICS", "SMILE DENTAL CARE", "CITY MEDICAL CLINIC",
        "SPECSAVERS", "PLANET FITNESS", "PELOTON", "24 HOUR FITNESS", "ONE MEDICAL", "ZOCDOC", "SEATTLE CHILDREN'S",
    ),
    "travel": (
        "DELTA AIR 0062", "UNITED AIRLINES", "AMERICAN AIRLINES", "SOUTHWEST AIRLINES", "BRITISH AIRWAYS",
        "RYANAIR", "EASYJET", "LUFTHANSA", "AIR FRANCE", "KLM", "EXPEDIA 72xx", "BOOKING.COM", "AIRBNB * HM{ref}",
        "HOTELS.COM", "MARRIOTT", "HILTON HOTELS", "HYATT REGENCY", "HOLIDAY INN", "AMTRAK .COM", "EUROSTAR",
        "TRAINLINE", "HERTZ RENT-A-CAR", "AVIS", "SIXT", "ALASKA AIR", "JETBLUE", "VRBO",
    ),
}  # fmt: skip

_CITIES = (
    "SEATTLE WA", "NEW YORK NY", "AUSTIN TX", "CHICAGO IL", "SAN FRANCISCO CA", "BOSTON MA", "DENVER CO",
    "MIAMI FL", "PORTLAND OR", "ATLANTA GA", "LONDON", "MANCHESTER", "BERLIN", "PARIS", "DUBLIN", "TORONTO ON",
)  # fmt: skip
_FIRST = ("JOHN", "JANE", "MARIA", "DAVID", "SARAH", "MICHAEL", "EMMA", "CARLOS", "PRIYA", "WEI", "AISHA", "TOM")
_LAST = ("SMITH", "DOE", "GARCIA", "LEE", "PATEL", "NGUYEN", "JOHNSON", "O'BRIEN", "MULLER", "ROSSI", "KIM", "BROWN")
_EMPLOYERS = ("ACME CORP", "GLOBEX INC", "INITECH LLC", "UMBRELLA LTD", "STARK INDUSTRIES", "WAYNE ENTERPRISES")
_CARD_PREFIXES = ("VISA DEBIT", "DEBIT CARD PURCHASE", "CONTACTLESS", "APPLE PAY", "CRD {last4}", "CARD {last4}")
# (low, high) amounts per category, drawn log-uniformly: a coffee is cheap, a flight is not.
_AMOUNTS: dict[str, tuple[float, float]] = {
    "food_dining": (3, 90), "groceries": (8, 260), "transport": (2, 95), "shopping": (6, 450),
    "bills_utilities": (25, 320), "entertainment": (5, 150), "health": (8, 300), "travel": (60, 1800),
    "income": (150, 6500), "transfers": (10, 2500), "fees": (1, 45), "other": (5, 400),
}  # fmt: skip
_CURRENCIES = (("$", "USD"), ("£", "GBP"), ("€", "EUR"))


def generate_transactions(num_examples: int, seed: int = 0) -> list[Example]:
    """Return ``num_examples`` synthetic statement lines (description and amount), categories cycling evenly."""
    rng = random.Random(seed)
    examples: list[Example] = []
    seen: set[str] = set()
    while len(examples) < num_examples:
        category = CATEGORY_IDS[len(examples) % len(CATEGORY_IDS)]
        description, is_credit = _describe(category, rng)
        amount = _amount(category, is_credit, rng)
        text = f"{description} {amount}"
        if text in seen:
            continue
        seen.add(text)
        meta = {"synthetic": True, "description": description, "amount": amount}
        examples.append(
            Example(example_id("synthetic_transactions", text), text, category, "synthetic_transactions", meta)
        )
    return examples


def read_synthetic_transactions(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Synthetic, seeded bank-statement lines in 12 categories, with realistic noise and personal data."""
    yield from generate_transactions(cfg.num_examples, cfg.seed)


def read_transactions(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Transaction files (.csv or .jsonl): description, amount, optional date and category (id, name or synonym).

    ``text_column`` (default ``description``) and ``label_column`` (default ``category``) name the columns; an
    ``amount`` column, when there, is appended to the text ("STARBUCKS #12 SEATTLE WA -6.50") and a ``date`` column
    kept in ``meta``. Rows without a category are left out (counted, not errors); ``label_map`` maps other names.
    """
    label_map = cfg.label_map
    bad = {k: v for k, v in (label_map or {}).items() if v not in CATEGORY_IDS}
    if bad:
        raise ConfigError(
            f"label_map values must be category ids ({'|'.join(CATEGORY_IDS)}); got {bad}", field="label_map"
        )
    text_column, label_column = cfg.text_column or "description", cfg.label_column or "category"
    path = local_file(cfg)
    rows = table_rows(path, (text_column,), errors)
    unlabeled = 0
    for line, record in rows:
        description = record[text_column]
        if not isinstance(description, str) or not description.strip():
            errors.report(
                "empty_text",
                DataError("empty description", path=path, line=line, field=text_column, expected="non-empty text"),
            )
            continue
        raw = record.get(label_column)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            unlabeled += 1
            continue
        label = normalize_category(raw, label_map)
        if label is None:
            errors.report(
                "unknown_label",
                DataError(
                    "unknown category",
                    path=path,
                    line=line,
                    field=label_column,
                    expected="a category id, name or synonym (finsent ls tasks; or a label_map)",
                    got=raw,
                ),
            )
            continue
        amount = record.get("amount")
        amount_text = str(amount).strip() if amount is not None else ""
        if amount_text and not any(c.isdigit() for c in amount_text):
            errors.report(
                "bad_amount",
                DataError("not an amount", path=path, line=line, field="amount", expected="a number", got=amount),
            )
            continue
        text = " ".join(f"{description.strip()} {amount_text}".split())
        meta = {"line": line, "date": record.get("date"), "amount": amount_text or None}
        yield Example(example_id("transactions", text), text, label, "transactions", meta)
    if unlabeled:
        errors.filtered["transactions: rows without a category"] += unlabeled


def _describe(category: str, rng: random.Random) -> tuple[str, bool]:
    """Return a description as a bank prints it, and whether money comes in."""
    if category in _MERCHANTS:
        merchant = rng.choice(_MERCHANTS[category]).format(ref=_ref(rng))
        if rng.random() < 0.08:  # refunds keep the merchant's category
            return rng.choice(("REFUND {m}", "{m} RETURN", "CREDIT VOUCHER {m}", "PURCHASE RETURN {m}")).format(
                m=merchant
            ), True
        return _card_line(merchant, category, rng), False
    name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    initial = f"{name[0]}. {name.split()[1].title()}"
    fields = {
        "name": name,
        "title": name.title(),
        "initial": initial,
        "date": f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}",
        "ref": _ref(rng),
        "last4": f"{rng.randint(0, 9999):04d}",
        "digits": str(rng.randint(10**8, 10**10)),
        "employer": rng.choice(_EMPLOYERS),
        "city": rng.choice(_CITIES),
        "iban": f"DE{rng.randint(10, 99)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)} "
        f"{rng.randint(1000, 9999)} {rng.randint(1000, 9999)} {rng.randint(10, 99)}",
        "phone": f"{rng.randint(200, 999)}-555-{rng.randint(0, 9999):04d}",
        "email": f"{name.split()[0].lower()}.{name.split()[1].lower().replace(chr(39), '')}@example.com",
    }
    templates, is_credit = {
        "income": (
            (
                "PAYROLL DIRECT DEP {employer}",
                "{employer} PAYROLL PPD ID: {digits}",
                "DIRECT DEP {employer} SALARY",
                "SALARY {employer}",
                "INTEREST PAYMENT",
                "INTEREST EARNED",
                "DIVIDEND VANGUARD",
                "IRS TREAS 310 TAX REF",
                "HMRC TAX REFUND",
                "MOBILE DEPOSIT REF {ref}",
            ),
            True,
        ),
        "transfers": (
            (
                "ZELLE TO {name} ON {date} REF # {ref}",
                "Zelle payment from {title} Conf# {ref}",
                "VENMO *{name}",
                "VENMO PAYMENT {digits}",
                "CASH APP*{name}",
                "ONLINE TRANSFER TO SAV XXXXXX{last4}",
                "TRANSFER FROM CHK {last4} CONF {ref}",
                "Payment to {initial}",
                "TRANSFER FROM {name}",
                "CHASE CREDIT CRD AUTOPAY PPD ID: {digits}",
                "PAYMENT THANK YOU-MOBILE",
                "SEPA TRANSFER TO {iban} {name}",
                "WIRE TRANSFER OUT {name} ACCT {digits}",
                "PAYPAL TRANSFER {email}",
            ),
            rng.random() < 0.3,
        ),
        "fees": (
            (
                "MONTHLY SERVICE FEE",
                "OVERDRAFT FEE FOR ITEM {ref}",
                "NON-CHASE ATM FEE-WITH",
                "FOREIGN TRANSACTION FEE",
                "LATE FEE",
                "INTEREST CHARGE ON PURCHASES",
                "ANNUAL MEMBERSHIP FEE",
                "WIRE TRANSFER FEE",
                "NSF RETURNED ITEM FEE",
                "ACCOUNT MAINTENANCE CHARGE",
                "FX COMMISSION CARD {last4}",
            ),
            False,
        ),
        "other": (
            (
                "ATM WITHDRAWAL {city}",
                "CASH WITHDRAWAL BANK OF AMERICA ATM",
                "CHECK #{last4}",
                "CHEQUE {last4}",
                "DONATION RED CROSS",
                "GOFUNDME *HELP {name}",
                "COURSERA.ORG",
                "UDEMY ONLINE COURSE",
                "STATE OF WA DMV",
                "USPS PO {last4} {city}",
                "UNIVERSITY TUITION {ref}",
                "MISC DEBIT {ref} CALL {phone}",
            ),
            False,
        ),
    }[category]
    return rng.choice(templates).format(**fields), is_credit


def _card_line(merchant: str, category: str, rng: random.Random) -> str:
    """Return a card purchase the way one of several banks and processors prints it."""
    city = rng.choice(_CITIES)
    last4 = f"{rng.randint(0, 9999):04d}"
    styles = [
        f"{merchant} {city}",
        f"POS DEBIT {merchant} {city}",
        f"CHECKCARD {rng.randint(1, 12):02d}{rng.randint(1, 28):02d} {merchant} {city} {rng.randint(10**22, 10**23)}",
        f"PURCHASE AUTHORIZED ON {rng.randint(1, 12):02d}/{rng.randint(1, 28):02d} {merchant} {city} CARD {last4}",
        f"{rng.choice(_CARD_PREFIXES).format(last4=last4)} {merchant} {city}",
        f"POS 4921 XXXX XXXX {last4} {merchant}",
        f"PAYPAL *{merchant}",
        merchant.title(),
    ]
    if category == "food_dining":
        styles += [f"SQ *{merchant} {city}", f"TST* {merchant} {city}"]
    if category in ("groceries", "shopping", "health"):
        styles.append(f"SQ *{merchant}")
    line = rng.choice(styles)
    return line[:40] if rng.random() < 0.15 else line  # banks cut long descriptors


def _amount(category: str, is_credit: bool, rng: random.Random) -> str:
    low, high = _AMOUNTS[category]
    value = math.exp(rng.uniform(math.log(low), math.log(high)))
    symbol, code = rng.choice(_CURRENCIES)
    number = f"{value:,.2f}"
    if code == "EUR" and rng.random() < 0.5:  # continental decimal comma
        number = number.replace(",", " ").replace(".", ",")
    sign = "+" if is_credit else rng.choice(("-", ""))
    return rng.choice(
        (
            f"{sign}{number}",
            f"{sign}{symbol}{number}",
            f"{code} {sign}{number}",
            f"{sign}{number} {code}",
            f"{number} {'CR' if is_credit else 'DR'}",
        )
    )


def _ref(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(rng.randint(5, 9)))
