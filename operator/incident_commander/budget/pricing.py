"""Model prices: a budget's own table, then the built-in defaults for Anthropic models on Bedrock. Pure.

A price is per 1,000 input and per 1,000 output tokens, in a currency. A budget's ``spec.pricing``
entries win; unless ``spec.defaultPricing`` is false, models it does not list are priced from
``DEFAULT_PRICES``. A model found in neither is an error (``UnknownModel``): a model without a
price is never counted as free.

Bedrock model ids come bare (``anthropic.claude-sonnet-5-5``) or behind an inference profile
(``global.…``, or a geography: ``us.…``, ``eu.…``, ``apac.…``, ``jp.…``, ``au.…``, ``ca.…``,
``us-gov.…``). The defaults are Anthropic's list prices, which Bedrock charges for the global
profile; AWS charges 10 % more for in-region and geographic endpoints of these models, so a bare id
or a geographic profile is priced at ``REGIONAL_PREMIUM`` times the list price. A budget's own
entry for the exact id it routes to overrides all of this.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal

from incident_commander.budget.model import BudgetSpec, Price, UnknownModel

PRICES_AS_OF = "2026-12-02"
"""When DEFAULT_PRICES were compiled, from Anthropic's model pages (platform.claude.com, "Models
overview" and each model's page: USD per million tokens, divided by 1,000 here). Prices change:
check the Amazon Bedrock pricing page and override in ``spec.pricing``."""

REGIONAL_PREMIUM = Decimal("1.10")
"""AWS's surcharge over the global inference profile for in-region and geographic endpoints."""

_GLOBAL = "global."
_GEOGRAPHIES = ("us-gov.", "us.", "eu.", "apac.", "jp.", "au.", "ca.")


def _per_1k(input_per_million: str, output_per_million: str) -> Price:
    return Price(
        input_per_1k=Decimal(input_per_million) / 1000,
        output_per_1k=Decimal(output_per_million) / 1000,
        currency="USD",
    )


DEFAULT_PRICES: Mapping[str, Price] = {
    # Current generation (released 2026).
    "anthropic.claude-opus-5-5": _per_1k("4", "20"),
    "anthropic.claude-sonnet-5-5": _per_1k("2", "10"),
    "anthropic.claude-fable-5": _per_1k("10", "50"),
    "anthropic.claude-opus-5": _per_1k("5", "25"),
    "anthropic.claude-sonnet-5": _per_1k("2", "10"),
    "anthropic.claude-opus-4-7": _per_1k("5", "25"),
    "anthropic.claude-opus-4-6-v1": _per_1k("5", "25"),
    "anthropic.claude-sonnet-4-6": _per_1k("3", "15"),
    # Still offered (legacy).
    "anthropic.claude-opus-4-5-20251101-v1:0": _per_1k("5", "25"),
    "anthropic.claude-sonnet-4-5-20250929-v1:0": _per_1k("3", "15"),
    "anthropic.claude-haiku-4-5-20251001-v1:0": _per_1k("1", "5"),
}
"""Anthropic's list prices (USD) by base Bedrock model id, as of PRICES_AS_OF."""

MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,255}$")


def base_model(model: str) -> tuple[str, bool]:
    """(the base model id, whether it is priced at the list price) for a model or profile id."""
    if model.startswith(_GLOBAL):
        return model[len(_GLOBAL) :], True
    for prefix in _GEOGRAPHIES:
        if model.startswith(prefix):
            return model[len(prefix) :], False
    return model, False


def price_for(spec: BudgetSpec, model: str, *, budget: str) -> Price:
    """The price of ``model`` under this budget, or UnknownModel (never a zero price, never a price
    in another currency than the limit's)."""
    price = _lookup(spec, model, budget=budget)
    if price.currency != spec.currency:
        raise UnknownModel(
            model,
            budget,
            f"model {model!r} is priced in {price.currency} but BudgetPolicy {budget}'s limit is in "
            f"{spec.currency}; prices are never converted",
        )
    return price


def _lookup(spec: BudgetSpec, model: str, *, budget: str) -> Price:
    own = spec.pricing.get(model)
    if own is not None:
        return own
    if spec.default_pricing:
        base, listed = base_model(model)
        default = DEFAULT_PRICES.get(base)
        if default is not None:
            if listed:
                return default
            return Price(
                input_per_1k=default.input_per_1k * REGIONAL_PREMIUM,
                output_per_1k=default.output_per_1k * REGIONAL_PREMIUM,
                currency=default.currency,
            )
    raise UnknownModel(model, budget)


def estimate(price: Price, tokens: int) -> Decimal:
    """What ``tokens`` tokens may cost at most: each at the higher of the two prices (the split
    between input and output is not known before the call), so an accurate token count never
    reserves too little."""
    return max(price.input_per_1k, price.output_per_1k) * tokens / 1000


def converse_estimate(price: Price, *, input_tokens: int, max_output_tokens: int) -> Decimal:
    """An upper bound for one Converse call: the input estimate at the input price, and at most
    ``max_output_tokens`` at the output price (Bedrock stops there)."""
    return (price.input_per_1k * input_tokens + price.output_per_1k * max_output_tokens) / 1000
