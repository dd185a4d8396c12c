"""Model prices: a budget's own entries, then the dated defaults; never a zero price."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from incident_commander.budget import pricing
from incident_commander.budget.model import Price, UnknownModel, parse_budget_spec

DOC = Path(__file__).resolve().parents[3] / "docs" / "budgetpolicy.md"


def spec(**changes: object) -> object:
    return parse_budget_spec(
        {
            "connectionRef": {"name": "c"},
            "limit": {"amount": "10"},
            "thresholds": [{"percent": 100, "action": "Halt"}],
            **changes,
        }
    )


def test_a_budgets_own_entry_wins_over_the_defaults() -> None:
    own = spec(
        pricing=[
            {"model": "global.anthropic.claude-sonnet-5-5", "inputPer1kTokens": "1", "outputPer1kTokens": "2"}
        ]
    )
    price = pricing.price_for(own, "global.anthropic.claude-sonnet-5-5", budget="ns/b")  # type: ignore[arg-type]
    assert (price.input_per_1k, price.output_per_1k) == (Decimal(1), Decimal(2))


def test_defaults_price_profiles_global_at_list_and_regional_at_a_premium() -> None:
    budget = spec()
    listed = pricing.price_for(budget, "global.anthropic.claude-haiku-4-5-20251001-v1:0", budget="ns/b")  # type: ignore[arg-type]
    assert (listed.input_per_1k, listed.output_per_1k) == (Decimal("0.001"), Decimal("0.005"))
    for model in (
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
    ):
        regional = pricing.price_for(budget, model, budget="ns/b")  # type: ignore[arg-type]
        assert (regional.input_per_1k, regional.output_per_1k) == (Decimal("0.0011"), Decimal("0.0055")), (
            model
        )


@pytest.mark.parametrize(
    "model", ["mystery", "global.mystery", "anthropic.claude-3-haiku", "us.anthropic.claude-v9"]
)
def test_an_unknown_model_is_an_error_never_zero_cost(model: str) -> None:
    with pytest.raises(UnknownModel, match="no price"):
        pricing.price_for(spec(), model, budget="ns/b")  # type: ignore[arg-type]


def test_without_defaults_only_the_listed_models_have_a_price() -> None:
    with pytest.raises(UnknownModel):
        pricing.price_for(spec(defaultPricing=False), "global.anthropic.claude-sonnet-5-5", budget="ns/b")  # type: ignore[arg-type]


def test_a_price_in_another_currency_is_refused_not_converted() -> None:
    budget = spec(
        pricing=[{"model": "m", "inputPer1kTokens": "1", "outputPer1kTokens": "1", "currency": "EUR"}]
    )
    with pytest.raises(UnknownModel, match="never converted"):
        pricing.price_for(budget, "m", budget="ns/b")  # type: ignore[arg-type]


def test_estimates_are_upper_bounds() -> None:
    price = Price(input_per_1k=Decimal("0.003"), output_per_1k=Decimal("0.015"))
    assert pricing.estimate(price, 1000) == Decimal("0.015"), "each token at the higher price"
    assert pricing.converse_estimate(price, input_tokens=1000, max_output_tokens=100) == Decimal("0.0045")


def test_the_documented_table_is_the_code_s() -> None:
    text = DOC.read_text()
    assert pricing.PRICES_AS_OF in text
    rows = dict(
        (model, (Decimal(i), Decimal(o)))
        for model, i, o in re.findall(
            r"^\| `(anthropic\.[^`]+)` \| ([0-9.]+) \| ([0-9.]+) \|$", text, re.MULTILINE
        )
    )
    assert rows == {m: (p.input_per_1k, p.output_per_1k) for m, p in pricing.DEFAULT_PRICES.items()}
