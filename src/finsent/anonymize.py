"""Mask personal data in transaction text before it reaches a teacher, a training file or a log.

Masks, in this order, with typed placeholders: e-mail addresses ``[EMAIL]``, IBANs ``[IBAN]``, card numbers (whole,
or masked to their last digits) ``[CARD]``, phone numbers ``[PHONE]``, account numbers (after an account keyword,
masked forms such as ``XXXXXX1234``, or any run of 9+ digits) ``[ACCOUNT]``, and the payee or payer name of
person-to-person transfers (Zelle, Venmo, Cash App, ``PAYMENT TO``, ``TRANSFER FROM`` ...) ``[NAME]``. Merchants,
amounts, store numbers (``#1234``), dates and merchant order references stay, so the category can still be read.
Patterns err towards masking: a wrongly masked reference number costs little, a leaked card number a lot.

>>> anonymize_text("ZELLE TO JOHN SMITH ON 01/15 REF # BAC8812 -120.00")
'ZELLE TO [NAME] ON 01/15 REF # BAC8812 -120.00'
>>> anonymize_text("SQ *STARBUCKS #1234 SEATTLE WA 6.50")
'SQ *STARBUCKS #1234 SEATTLE WA 6.50'
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
# Country code, check digits, then letters or digits, optionally in groups of four (15-34 characters in all).
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(
    r"\b(?:\d[ -]?){12,18}\d\b"  # a whole card number, 13-19 digits, in groups or not
    r"|(?<![\w*])\d{4}[ -]?(?:[X*•]{4}[ -]?){1,3}[X*•]{0,4}\d{4}\b"  # 4921 XXXX XXXX 1234
    r"|(?<![\w*])(?:[X*•]{4}[ -]?){2,3}[X*•]{0,4}\d{4}\b"  # XXXX XXXX XXXX 1234, ************1234
    r"|(?<=\bCARD )(?:(?:ENDING|NO\.?|NUMBER|#)(?: IN)? ?)?[X*•.]*\d{4}\b"  # CARD 1234, CARD ENDING IN 1234
    r"|(?<=\bCRD )\d{4}\b",
    re.IGNORECASE,
)
_PHONE = re.compile(
    r"(?<![\w#*])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]?\d{4}\b"  # (206) 555-0147
    r"|(?<![\w#*])\+\d{1,3}(?:[ .-]?\d{2,4}){2,4}\b"  # +44 20 7946 0958
)
_MIN_PHONE_DIGITS = 9  # fewer is an amount or a code ("+1 234.56"), not a phone number
_ACCOUNT_AFTER_KEYWORD = re.compile(
    r"\b(?P<key>ACCT|ACCOUNT|A/C|CHK|SAV|SAVINGS|CHECKING)(?P<sep>[ :#.]+(?:NO\.?|NUMBER|ENDING(?: IN)?)?[ :#]*)"
    r"[X*.]*\d{4,}\b",
    re.IGNORECASE,
)
_ACCOUNT = re.compile(
    r"(?<![\w#])[X*]{2,}\d{3,}\b"  # XXXXXX1234, **5678
    r"|(?<![\w#.,-])\d{9,}\b(?![.,]\d)"  # long digit runs: account, routing and reference numbers (not amounts)
)
# Services whose transfers go between people: what follows is a person, unless it is an account word.
_P2P_SERVICE = r"(?:ZELLE|VENMO|CASH\s?APP|APPLE\s?CASH|REVOLUT|MONZO|POPMONEY|INTERAC E-?TRANSFER)"
_DIRECTION = r"(?:(?:PAYMENT|PMT|TRANSFER|XFER|SENT|RECEIVED|PAID|REQUEST|E-?TRANSFER)\s?)?(?:(?:TO|FROM)\b)?"
_NAME_WORD = r"[A-Z](?:[A-Z'’-]*[A-Z])?\.?"
_NAME = rf"{_NAME_WORD}(?:[ ]{_NAME_WORD}){{0,3}}"
_MASKED_ACCOUNT = r"(?:\[(?:IBAN|ACCOUNT)\][ ,]*)?"  # "TRANSFER TO [IBAN] MAX MUSTERMANN"
_P2P = re.compile(
    rf"(?P<lead>\b{_P2P_SERVICE}\b[ *:]*{_DIRECTION}[ *:]*{_MASKED_ACCOUNT})(?P<name>{_NAME})", re.IGNORECASE
)
_TRANSFER = re.compile(
    rf"(?P<lead>\b(?:PAYMENT|PMT|TRANSFER|XFER|TRANSFERRED|SENT|RECEIVED|PAID|REMITTANCE)\s(?:TO|FROM)[ :]+"
    rf"{_MASKED_ACCOUNT})(?P<name>{_NAME})",
    re.IGNORECASE,
)
# Words that end a name (what banks print after the payee), or show that the "payee" is an account or a business.
_STOP_WORDS = frozenset(
    """ON REF REFERENCE FOR VIA CONF CONFIRMATION ID MEMO AT WEB ONLINE MOBILE TRANSFER PAYMENT PMT ACCT ACCOUNT
    TRANSACTION TXN NO NUMBER DATE CARD BY THE OF AND INTERNET PPD CCD TEL PHONE TO FROM""".split()
)
_NOT_A_PERSON = frozenset(
    """SAVINGS SAVING CHECKING CHK SAV CURRENT BROKERAGE ISA LOAN MORTGAGE CREDIT DEBIT VISA MASTERCARD AMEX
    AMERICAN EXPRESS DISCOVER CHASE CITI CAPITAL BANK BANKING INC LLC LTD LIMITED CO CORP COMPANY PLC GMBH GROUP
    HOLDINGS INSURANCE ENERGY ELECTRIC GAS WATER POWER UTILITIES UTILITY TELECOM WIRELESS CABLE TV COMMUNICATIONS
    COUNTY CITY STATE IRS TREASURY TAX DEPT DEPARTMENT SCHOOL UNIVERSITY COLLEGE HOSPITAL CLINIC MEDICAL STORE SHOP
    MARKET SERVICES SERVICE FINANCE FINANCIAL LENDING AUTO MOTORS RENT LANDLORD PROPERTIES MANAGEMENT REALTY
    APARTMENTS PAYPAL AMAZON OWN MY YOUR SELF""".split()
)


def anonymize_text(text: str) -> str:
    """Return ``text`` with personal data replaced by typed placeholders (see the module docstring)."""
    text = _EMAIL.sub("[EMAIL]", text)
    text = _IBAN.sub(_iban, text)
    text = _CARD.sub("[CARD]", text)
    text = _PHONE.sub(_phone, text)
    text = _ACCOUNT_AFTER_KEYWORD.sub(lambda m: f"{m.group('key')}{m.group('sep')}[ACCOUNT]", text)
    text = _ACCOUNT.sub("[ACCOUNT]", text)
    text = _P2P.sub(lambda m: _mask_name(m, is_p2p=True), text)
    return _TRANSFER.sub(lambda m: _mask_name(m, is_p2p=False), text)


def _iban(match: re.Match[str]) -> str:
    # A country code and check digits are not enough: real IBANs are at least 15 characters long.
    return "[IBAN]" if len(match.group(0).replace(" ", "")) >= 15 else match.group(0)


def _phone(match: re.Match[str]) -> str:
    return "[PHONE]" if sum(c.isdigit() for c in match.group(0)) >= _MIN_PHONE_DIGITS else match.group(0)


def _mask_name(match: re.Match[str], is_p2p: bool) -> str:
    words = match.group("name").split(" ")
    kept: list[str] = []
    for word in words:
        if word.upper().strip(".") in _STOP_WORDS:
            break
        kept.append(word)
    rest = match.group("name")[len(" ".join(kept)) :]
    upper = {w.upper().strip(".'’") for w in kept}
    # Outside a P2P service a payee must look like a person: two or three words, or an initial and a surname.
    looks_like_person = is_p2p or 2 <= len(kept) <= 3
    if not kept or upper & _NOT_A_PERSON or not looks_like_person:
        return match.group(0)
    return f"{match.group('lead')}[NAME]{rest}"
